package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/internal/config"
)

func init() { register(newFeaturesCmd) }

// fileFlagHelp is the help of every features command's --file flag.
const fileFlagHelp = "feature definitions (YAML); default the config's features.file (" + defaultFeaturesFile + ")"

// definitionsFile is a --file value, or the config's features.file when
// the flag was not given.
func definitionsFile(flag string, cfg config.Config) string {
	if flag != "" {
		return flag
	}
	return cfg.Features.File
}

// defaultFeaturesFile is the project's definitions file, relative to the
// repository root.
const defaultFeaturesFile = "features/features.yaml"

func newFeaturesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "features",
		Short: "Feature definitions and the feature store",
	}
	cmd.AddCommand(newFeaturesValidateCmd(), newFeaturesMaterializeCmd(), newFeaturesRollbackCmd(), newFeaturesGetCmd(), newFeaturesSkewCmd(), newFeaturesScheduleCmd(), newFeaturesTrainingSetCmd(), newFeaturesPruneCmd())
	return cmd
}

func newFeaturesValidateCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the feature definitions file; print a summary and its schema hash",
		Long: `validate loads the feature definitions file and reports every problem with
its file:line and feature (exit status 1), or prints how many features each
entity and lane has, how wide a ranker's row per candidate item can be, the
storage groups and the schema hash that models trained on these definitions
record.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			return featuresValidate(cmd.OutOrStdout(), definitionsFile(file, cfg))
		},
	}
	cmd.Flags().StringVar(&file, "file", "", fileFlagHelp)
	return cmd
}

func featuresValidate(out io.Writer, file string) error {
	s, err := features.Load(file)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: %d features, valid\nschema hash: %s\n\n", file, s.Len(), s.SchemaHash())

	var count [4][3]int
	for _, f := range s.All() {
		count[f.Entity][f.Lane]++
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "entity\t")
	for _, l := range features.Lanes() {
		fmt.Fprintf(tw, "%s\t", l)
	}
	fmt.Fprint(tw, "total\t\n")
	var laneTotal [3]int
	for _, e := range features.Entities() {
		fmt.Fprintf(tw, "%s\t", e)
		total := 0
		for _, l := range features.Lanes() {
			n := count[e][l]
			total += n
			laneTotal[l] += n
			fmt.Fprintf(tw, "%s\t", dash(n))
		}
		fmt.Fprintf(tw, "%d\t\n", total)
	}
	fmt.Fprint(tw, "total\t")
	for _, n := range laneTotal {
		fmt.Fprintf(tw, "%d\t", n)
	}
	fmt.Fprintf(tw, "%d\t\n", s.Len())
	if err := tw.Flush(); err != nil {
		return err
	}

	inputs := s.RankerInputs()
	width := 0
	for _, f := range inputs {
		width += f.Type.Width()
	}
	fmt.Fprintf(out, "\nper item row: %d features, %d float32 values (user, item, user_item and request features; %d lists and maps are not ranker inputs)\n",
		len(inputs), width, s.Len()-len(inputs))
	groups := make([]string, 0, len(s.Groups()))
	for _, g := range s.Groups() {
		groups = append(groups, fmt.Sprintf("%s (%d)", g.Name, len(g.Features)))
	}
	fmt.Fprintf(out, "groups: %s\n", strings.Join(groups, ", "))
	return nil
}

// dash prints 0 as "-" so that empty cells stand out.
func dash(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}
