package serving

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
)

// testCA issues certificates for TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "adaptrec test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate and key signed by the CA, as PEM.
func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func TestServerTLSAndMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvCert, srvKey := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := ca.issue(t, "client", x509.ExtKeyUsageClientAuth)
	c := config.Server{TLSCert: write("server.pem", srvCert), TLSKey: write("server.key", srvKey), ClientCA: write("ca.pem", ca.pem)}
	opts, err := serverOptions(c)
	if err != nil {
		t.Fatal(err)
	}
	svc := NewService(slog.New(slog.NewTextHandler(io.Discard, nil)), &recorder{}, nil, Options{})
	srv, _ := NewGRPCServer(svc, opts...)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	call := func(tc *tls.Config) error {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = adaptrecv1.NewRecommendServiceClient(conn).Recommend(ctx, &adaptrecv1.RecommendRequest{UserId: "u1"})
		return err
	}
	pair, err := tls.X509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	// With a client certificate the call reaches the service (which has
	// nothing to recommend yet: UNAVAILABLE, not a transport error).
	const served = "no recommendations available yet"
	if err := call(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), served) {
		t.Fatalf("mTLS call with a client certificate: %v, want the service's UNAVAILABLE", err)
	}
	// Without one the handshake is refused: the service never answers.
	if err := call(&tls.Config{RootCAs: roots}); err == nil || strings.Contains(err.Error(), served) {
		t.Fatalf("call without a client certificate: %v, want a refused connection", err)
	}
	// A bad key file is named.
	if _, err := serverOptions(config.Server{TLSCert: c.TLSCert, TLSKey: write("bad.key", []byte("nope"))}); err == nil {
		t.Fatal("a bad TLS key was accepted")
	}
}
