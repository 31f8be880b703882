#!/usr/bin/env python3
"""Reference external trainer for adaptrec: PyTorch, for GPU hosts.

It speaks the external-command protocol of docs/adr/014 (trainer/job.Command)
and writes what the protocol requires of an external trainer:

    ranker.py --input <uri of input.json> --output <uri of a folder> [--params <json>]

  * reads the point-in-time training set (training/<id>/manifest.json and its
    Parquet parts) from the store the input names;
  * splits it by event time exactly as trainer/job does (the latest
    validation_fraction validates, training ends `gap` before the cutoff);
  * trains the same ranker architecture as trainer/ranker (per-column
    standardization inside the graph, clipped to +-CLIP_Z standard deviations
    as trainer/ranker.ClipZ does in training and in the graph, Gemm+ReLU
    hidden layers, a Gemm to one logit, sigmoid) with Adam on binary
    cross-entropy, on CUDA when present;
  * trains implicit-ALS item embeddings (Hu, Koren, Volinsky) from the event
    log's positives before the cutoff and builds the IVF index artifact
    (trainer/retrieval's format, CRC-32C);
  * exports the ranker as the ONNX graph trainer/ranker writes, node for node
    (Sub, Mul, Clip with the standardize.clip_min/clip_max initializers, then
    Gemm/Relu layers and Sigmoid; the same node and initializer names, opset
    17, IR 8, float_data) with its eight adaptrec.* metadata keys, so
    trainer/ranker.ParseONNX reads it and the registry's validator checks it
    like a Go model;
  * writes ranker.onnx, items.ivf, then metadata.json in format 2 WITHOUT
    items.ann and covisit.bin (no "ann" or "covisit" section, neither in the
    artifacts): those are serving indexes (serving/ann's HNSW over the item
    vectors, serving/covisit's co-visitation table from the same positives)
    that trainer/job.Command derives in Go after this script exits 0, from
    items.ivf and the job's event range, and records as built by the runner;
  * prints JSON progress lines: {"event":"progress",...}, then "done" or
    "error".

Only local folders (file:// URIs or paths) are read and written: a launcher
on a GPU host syncs the S3 prefixes to local disk around this script. Needs
numpy, pyarrow, torch and onnx. Not run by the tests (no Python there); it is
exercised on a GPU host. The result is not bit-identical to the Go trainer's
(other initialisation, float order), only equivalent.
"""

import argparse
import datetime as dt
import glob
import hashlib
import json
import math
import os
import re
import struct
import sys
import time

import numpy as np
import onnx
import pyarrow.parquet as pq
import torch
from onnx import TensorProto, helper

START = time.time()
# Standardized inputs are clipped to [-CLIP_Z, CLIP_Z] in training and in the
# graph: trainer/ranker.ClipZ, which ParseONNX requires of the clip
# initializers.
CLIP_Z = 5.0
# trainer/job.MetadataFormat: format 2 lets the runner add items.ann and
# covisit.bin (see the module documentation).
METADATA_FORMAT = 2
DEFAULT_WEIGHTS = {"ACTION_VIEW": 1, "ACTION_CLICK": 1, "ACTION_WATCH": 1, "ACTION_COMPLETE": 2,
                   "ACTION_LIKE": 2, "ACTION_ADD_TO_CART": 2, "ACTION_PURCHASE": 3}


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def progress(stage, message, step=0, steps=0, metrics=None):
    e = {"stage": stage, "message": message, "elapsed_s": round(time.time() - START, 3)}
    if steps:
        e.update(step=step, steps=steps)
    if metrics:
        e["metrics"] = {k: float(v) for k, v in metrics.items() if math.isfinite(v)}
    emit("progress", **e)


def local(uri):
    if uri.startswith("file://"):
        return uri[len("file://"):]
    if "://" in uri:
        raise SystemExit(f"{uri}: this reference reads and writes local folders only (sync S3 around it)")
    return uri


def go_duration(s):
    """Parses a Go duration ("30m0s", "1h0m0s", "-1ns") into seconds."""
    if s in ("0", "0s", ""):
        return 0.0
    sign = -1.0 if s.startswith("-") else 1.0
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total = sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(h|ms|us|µs|ns|m|s)", s.lstrip("-")))
    return sign * total


def params_with_defaults(p):
    p = json.loads(json.dumps(p or {}))
    p.setdefault("seed", 0)
    p["validation_fraction"] = p.get("validation_fraction") or 0.2
    p.setdefault("gap", "0s")
    r = p.setdefault("ranker", {})
    if r.get("hidden") is None:
        r["hidden"] = [64, 32]
    r["epochs"] = r.get("epochs") or 4
    r["batch_size"] = r.get("batch_size") or 512
    r["learning_rate"] = r.get("learning_rate") or 0.002
    r["l2"] = r.get("l2") or 0.0
    r["early_stopping_fraction"] = r.get("early_stopping_fraction") or 0.0
    e = p.setdefault("embeddings", {})
    e["factors"] = e.get("factors") or 64
    e["iterations"] = e.get("iterations") or 15
    e["regularization"] = e.get("regularization") or 40.0
    e["alpha"] = e.get("alpha") or 10.0
    e["lists"] = e.get("lists") or 0
    e["nprobe"] = e.get("nprobe") or 8
    if e.get("weights") is None:
        e["weights"] = dict(DEFAULT_WEIGHTS)
    return p


def read_training_set(store, set_id):
    folder = os.path.join(store, "training", set_id)
    with open(os.path.join(folder, "manifest.json")) as f:
        m = json.load(f)
    width, times, labels, values = m["width"], [], [], []
    for part in m["files"]:
        path = os.path.join(folder, part["name"])
        with open(path, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != part["sha256"]:
            raise SystemExit(f"{path} does not match its manifest checksum")
        t = pq.read_table(path, columns=["event_time", "label", "features"])
        lists = t.column("features").combine_chunks()
        if not np.all(np.diff(lists.offsets.to_numpy()) == width):
            raise SystemExit(f"{path}: a row does not hold {width} values")
        times.append(t.column("event_time").cast("int64").to_numpy())
        labels.append(t.column("label").to_numpy())
        values.append(lists.values.to_numpy().reshape(-1, width))
    return m, np.concatenate(times), np.concatenate(labels).astype(np.float32), np.concatenate(values).astype(np.float32)


def split(times, labels, frac, gap_ms):
    n = len(times)
    idx = np.argsort(times, kind="stable")
    n_val = min(max(int(round(frac * n)), 1), n - 1)
    cutoff = int(times[idx[n - n_val]])
    sorted_t = times[idx]
    val_start = int(np.searchsorted(sorted_t, cutoff, side="left"))
    train_end = cutoff - gap_ms
    train_stop = int(np.searchsorted(sorted_t, train_end, side="left"))
    tr, va = idx[:train_stop], idx[val_start:]
    if len(tr) == 0 or labels[tr].min() == labels[tr].max() or labels[va].min() == labels[va].max():
        raise SystemExit("the split leaves a part without both labels")
    return cutoff, train_end, tr, va, val_start - train_stop


def auc(scores, labels):
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    ranks = np.empty(len(s))
    for f, c in zip(first, counts):
        ranks[f:f + c] = f + (c + 1) / 2.0
    pos = labels[order] >= 0.5
    p, n = pos.sum(), len(s) - pos.sum()
    return float((ranks[pos].sum() - p * (p + 1) / 2) / (p * n))


def logloss(probs, labels):
    q = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(q) + (1 - labels) * np.log(1 - q)))


def train_ranker(x, y, p, device):
    r = p["ranker"]
    torch.manual_seed(p["seed"])
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    std = np.sqrt(((x64 - mean) ** 2).mean(axis=0))
    # A column constant up to rounding teaches nothing: scale 0 ignores it,
    # with trainer/ranker's threshold.
    varies = std > 1e-6 * np.maximum(1.0, np.abs(mean))
    scale = np.where(varies, 1.0 / np.where(varies, std, 1.0), 0.0)
    sizes = [x.shape[1]] + list(r["hidden"]) + [1]
    layers = [torch.nn.Linear(sizes[i], sizes[i + 1]).to(device) for i in range(len(sizes) - 1)]
    params = [q for layer in layers for q in layer.parameters()]
    opt = torch.optim.Adam(params, lr=r["learning_rate"])
    # Standardized and clipped in float32, exactly as the exported graph does.
    xs = torch.tensor(standardize(x, mean.astype(np.float32), scale.astype(np.float32)), device=device)
    ys = torch.tensor(y, device=device)
    gen = torch.Generator(device="cpu").manual_seed(p["seed"])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    last = 0.0
    for epoch in range(1, r["epochs"] + 1):
        perm = torch.randperm(len(ys), generator=gen).to(device)
        total, batches, began = 0.0, 0, time.time()
        for b in range(0, len(ys), r["batch_size"]):
            i = perm[b:b + r["batch_size"]]
            h = xs[i]
            for k, layer in enumerate(layers):
                h = layer(h)
                if k < len(layers) - 1:
                    h = torch.relu(h)
            loss = loss_fn(h.squeeze(1), ys[i])
            if r["l2"]:
                loss = loss + 0.5 * r["l2"] * sum((layer.weight ** 2).sum() for layer in layers)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, batches = total + loss.detach().item(), batches + 1
        last = total / batches
        rate = len(ys) / max(time.time() - began, 1e-9)
        progress("ranker", f"epoch {epoch}/{r['epochs']}: loss {last:.4f}, {rate:.0f} rows/s", epoch, r["epochs"], {"loss": last, "rows_per_s": rate})
    weights = [(layer.weight.detach().cpu().numpy().astype(np.float32), layer.bias.detach().cpu().numpy().astype(np.float32)) for layer in layers]
    return mean.astype(np.float32), scale.astype(np.float32), weights, last


def standardize(x, mean, scale):
    """The graph's Sub, Mul and Clip, in float32."""
    return np.clip((x.astype(np.float32) - mean) * scale, np.float32(-CLIP_Z), np.float32(CLIP_Z))


def predict(x, mean, scale, weights):
    h = standardize(x, mean, scale)
    for k, (w, b) in enumerate(weights):
        h = h @ w.T + b
        if k < len(weights) - 1:
            h = np.maximum(h, 0)
    return (1 / (1 + np.exp(-h[:, 0]))).astype(np.float32)


def export_onnx(mean, scale, weights, schema, seed):
    """The graph trainer/ranker.ExportONNX writes, node for node."""
    width = len(mean)
    hidden = [w.shape[0] for w, _ in weights[:-1]]
    f = lambda name, a: helper.make_tensor(name, TensorProto.FLOAT, list(a.shape), a.flatten().tolist())
    # The clip bounds are scalars (no dims), as trainer/ranker writes them.
    inits = [f("standardize.mean", mean), f("standardize.scale", scale),
             f("standardize.clip_min", np.array(-CLIP_Z, dtype=np.float32)),
             f("standardize.clip_max", np.array(CLIP_Z, dtype=np.float32))]
    nodes = [helper.make_node("Sub", ["features", "standardize.mean"], ["standardize.centered"], name="standardize.sub"),
             helper.make_node("Mul", ["standardize.centered", "standardize.scale"], ["standardize.scaled"], name="standardize.mul"),
             helper.make_node("Clip", ["standardize.scaled", "standardize.clip_min", "standardize.clip_max"], ["standardize.out"],
                              name="standardize.clip")]
    x = "standardize.out"
    for l, (w, b) in enumerate(weights):
        inits += [f(f"dense{l}.weight", w), f(f"dense{l}.bias", b)]
        nodes.append(helper.make_node("Gemm", [x, f"dense{l}.weight", f"dense{l}.bias"], [f"dense{l}.gemm"], name=f"dense{l}.gemm", transB=1))
        x = f"dense{l}.gemm"
        if l < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [x], [f"dense{l}.relu"], name=f"dense{l}.relu"))
            x = f"dense{l}.relu"
    nodes.append(helper.make_node("Sigmoid", [x], ["score"], name="sigmoid"))
    graph = helper.make_graph(nodes, "adaptrec_ranker",
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", width])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])], inits)
    model = helper.make_model(graph, producer_name="adaptrec-reference-pytorch", opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "adaptrec.ranker.format": "1",
        "adaptrec.model_kind": "mlp" if hidden else "lr",
        "adaptrec.hidden": ",".join(str(h) for h in hidden),
        "adaptrec.seed": str(seed),
        "adaptrec.input_width": str(width),
        "adaptrec.feature_schema_hash": schema["schema_hash"],
        "adaptrec.feature_names": json.dumps([ft["name"] for ft in schema["features"]], separators=(",", ":")),
        "adaptrec.model_schema": json.dumps(schema, separators=(",", ":")),
    }
    helper.set_model_props(model, dict(sorted(meta.items())))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def read_positives(store, topic, lo_ms, hi_ms, weights):
    users, items, strength = {}, {}, {}
    read = positives = 0
    for path in sorted(glob.glob(os.path.join(store, "events", topic, "date=*", "hour=*", "*.parquet"))):
        t = pq.read_table(path, columns=["event_time", "user_id", "item_id", "action"])
        ms = t.column("event_time").cast("int64").to_numpy()
        keep = (ms >= lo_ms) & (ms < hi_ms)
        read += int(keep.sum())
        for u, i, a in zip(np.asarray(t.column("user_id"))[keep], np.asarray(t.column("item_id"))[keep], np.asarray(t.column("action"))[keep]):
            w = weights.get(a)
            if w is None or not u or not i:
                continue
            positives += 1
            key = (users.setdefault(u, len(users)), items.setdefault(i, len(items)))
            strength[key] = strength.get(key, 0.0) + w
    return users, items, strength, read, positives


def als(n_users, n_items, pairs, e, seed, device):
    d, lam, alpha = e["factors"], e["regularization"], e["alpha"]
    g = torch.Generator(device="cpu").manual_seed(seed)
    uf = (torch.randn(n_users, d, generator=g, dtype=torch.float64) * 0.01).to(device)
    itf = (torch.randn(n_items, d, generator=g, dtype=torch.float64) * 0.01).to(device)
    u = torch.tensor([k[0] for k in pairs], device=device)
    i = torch.tensor([k[1] for k in pairs], device=device)
    c1 = torch.tensor([alpha * s for s in pairs.values()], dtype=torch.float64, device=device)  # confidence - 1

    def solve(rows, fixed, row_idx, col_idx):
        gram = fixed.T @ fixed + lam * torch.eye(d, dtype=torch.float64, device=device)
        y = fixed[col_idx]
        a = gram.expand(rows, d, d).clone()
        a.index_add_(0, row_idx, c1[:, None, None] * y[:, :, None] * y[:, None, :])
        b = torch.zeros(rows, d, dtype=torch.float64, device=device)
        b.index_add_(0, row_idx, (1 + c1)[:, None] * y)
        return torch.linalg.solve(a, b)

    for it in range(1, e["iterations"] + 1):
        itf = solve(n_items, uf, i, u)
        uf = solve(n_users, itf, u, i)
        progress("embeddings", f"ALS iteration {it}/{e['iterations']}", it, e["iterations"])
    return itf.float().cpu().numpy()


def crc32c(data, crc=0):
    if not hasattr(crc32c, "table"):
        t = []
        for n in range(256):
            c = n
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            t.append(c)
        crc32c.table = t
    t = crc32c.table
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = t[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def ivf(ids, vecs, e, seed, device):
    n, d = vecs.shape
    lists = e["lists"] or max(1, min(int(round(2 * math.sqrt(n))), n // 8, 1 << 16))
    x = torch.tensor(vecs, device=device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    cent = x[torch.randperm(n, generator=g)[:lists].to(device)].clone()
    for _ in range(20):
        assign = torch.cdist(x, cent).argmin(dim=1)
        for l in range(lists):
            members = x[assign == l]
            cent[l] = members.mean(dim=0) if len(members) else x[torch.randint(n, (1,), generator=g).item()]
    assign = torch.cdist(x, cent).argmin(dim=1).cpu().numpy()
    order = np.argsort(assign, kind="stable").astype(np.uint32)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(assign, minlength=lists))]).astype(np.uint32)
    payload = bytearray()
    for s in ids:
        b = s.encode()
        v = len(b)
        while v >= 0x80:
            payload.append((v & 0x7F) | 0x80)
            v >>= 7
        payload.append(v)
        payload += b
    payload += cent.float().cpu().numpy().astype("<f4").tobytes() + offsets.astype("<u4").tobytes()
    payload += order.astype("<u4").tobytes() + vecs[order].astype("<f4").tobytes()
    header = b"ADRECIVF" + struct.pack("<IIIIIIddQI", 1, d, n, lists, e["nprobe"], 0, e["regularization"], e["alpha"], len(payload), 0)
    header += struct.pack("<I", crc32c(payload, crc32c(header)))
    return header + bytes(payload), lists


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--params")
    a = ap.parse_args()
    with open(local(a.input)) as f:
        job = json.load(f)
    p = params_with_defaults(json.loads(a.params) if a.params else job.get("params"))
    out, store = local(a.output), local(job["store"])
    os.makedirs(out, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    timings, lap = {}, time.time()

    progress("read", f"reading training set {job['training_set']} on {device}")
    m, times, labels, x = read_training_set(store, job["training_set"])
    timings["read"], lap = time.time() - lap, time.time()
    gap = go_duration(p["gap"]) or go_duration(m["attribution"])
    p["gap"] = f"{int(round(gap))}s"
    cutoff, train_end, tr, va, gap_rows = split(times, labels, p["validation_fraction"], int(round(max(gap, 0) * 1000)))
    progress("split", f"{len(tr)} training examples, {len(va)} validation examples ({gap_rows} in the gap dropped)")
    timings["split"], lap = time.time() - lap, time.time()

    mean, scale, weights, train_loss = train_ranker(x[tr], labels[tr], p, device)
    timings["ranker"], lap = time.time() - lap, time.time()
    scores = predict(x[va], mean, scale, weights)
    base_rate = float(labels[tr].mean())
    metrics = {"auc": auc(scores, labels[va]), "logloss": logloss(scores, labels[va]),
               "baseline_logloss": logloss(np.full(len(va), base_rate, dtype=np.float32), labels[va]),
               "validation_positive_rate": float(labels[va].mean()), "train_loss": train_loss}
    progress("evaluate", f"validation AUC {metrics['auc']:.4f}, log loss {metrics['logloss']:.4f}", metrics=metrics)
    timings["evaluate"], lap = time.time() - lap, time.time()

    ev = job.get("events") or {}
    topic = ev.get("topic") or "adaptrec.interactions.v1"
    to_ms = cutoff
    if ev.get("to"):
        to_ms = min(to_ms, int(dt.datetime.fromisoformat(ev["to"].replace("Z", "+00:00")).timestamp() * 1000))
    from_ms = int(dt.datetime.fromisoformat(ev["from"].replace("Z", "+00:00")).timestamp() * 1000) if ev.get("from") else \
        int(dt.datetime.fromisoformat(m["from"].replace("Z", "+00:00")).timestamp() * 1000) - 30 * 24 * 3600 * 1000
    users, items, strength, read, positives = read_positives(store, topic, from_ms, to_ms, p["embeddings"]["weights"])
    # Dense indexes in id order, as the Go trainer numbers them.
    uids, iids = sorted(users), sorted(items)
    urank, irank = {users[s]: k for k, s in enumerate(uids)}, {items[s]: k for k, s in enumerate(iids)}
    pairs = {(urank[u], irank[i]): s for (u, i), s in sorted(strength.items())}
    progress("embeddings", f"{positives} positives of {read} events: {len(pairs)} pairs, {len(uids)} users, {len(iids)} items")
    item_vecs = als(len(uids), len(iids), pairs, p["embeddings"], p["seed"], device)
    timings["embeddings"], lap = time.time() - lap, time.time()
    index, lists = ivf(iids, item_vecs, p["embeddings"], p["seed"], device)
    progress("index", f"IVF index: {len(iids)} items of {item_vecs.shape[1]} dims in {lists} lists")
    timings["index"], lap = time.time() - lap, time.time()

    ranker = export_onnx(mean, scale, weights, m["model_schema"], p["seed"])
    progress("export", f"ranker.onnx {len(ranker)} bytes, items.ivf {len(index)} bytes")
    timings["export"], lap = time.time() - lap, time.time()
    artifacts = []
    for name, role, data in (("ranker.onnx", "ranker", ranker), ("items.ivf", "index", index)):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        artifacts.append({"name": name, "role": role, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    iso = lambda ms: dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with open(__file__, "rb") as f:
        code = "ranker.py@" + hashlib.sha256(f.read()).hexdigest()[:12]
    timings["write"] = time.time() - lap
    timings["total"] = time.time() - START
    # Format 2 without "ann" and "covisit" sections: the runner builds
    # items.ann and covisit.bin and adds them (trainer/job.Command).
    md = {
        "format": METADATA_FORMAT, "job_id": job["job_id"], "trainer": "pytorch", "code_version": code,
        "created_at": iso(int(time.time() * 1000)), "training_set": m["id"],
        "schema_hash": m["model_schema"]["schema_hash"], "model_schema": m["model_schema"], "input_width": m["width"],
        "params": p,
        "split": {"cutoff": iso(cutoff), "train_end": iso(train_end), "gap": p["gap"], "train_rows": len(tr),
                  "train_positives": int(labels[tr].sum()), "validation_rows": len(va), "validation_positives": int(labels[va].sum()),
                  "gap_rows": gap_rows, "early_stopping_rows": 0, "best_epoch": p["ranker"]["epochs"], "epochs_run": p["ranker"]["epochs"]},
        "embeddings": {"topic": topic, "from": iso(from_ms), "to": iso(to_ms), "events_read": read, "positives": positives,
                       "pairs": len(pairs), "users": len(uids), "items": len(iids), "dims": int(item_vecs.shape[1]),
                       "lists": lists, "nprobe": p["embeddings"]["nprobe"]},
        "metrics": metrics, "artifacts": artifacts, "timings_s": timings,
    }
    with open(os.path.join(out, "metadata.json"), "w") as f:
        json.dump(md, f, indent=2)
    progress("write", "wrote " + out)
    emit("done", metadata="file://" + os.path.abspath(os.path.join(out, "metadata.json")))


if __name__ == "__main__":
    try:
        main()
    except SystemExit as e:
        if e.code not in (None, 0):
            emit("error", message=str(e.code))
        raise
    except Exception as e:  # the protocol's error line, then the traceback for the log
        emit("error", message=f"{type(e).__name__}: {e}")
        raise
