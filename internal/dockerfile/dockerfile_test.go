package dockerfile

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	for name, tc := range map[string]struct {
		text    string
		want    []Instruction
		wantErr bool
	}{
		"continuations and comments": {
			text: "# header\nFROM golang:1.26 AS build\n\nRUN a \\\n  # inside\n  b\ncopy x /y\n",
			want: []Instruction{{"FROM", "golang:1.26 AS build", 2}, {"RUN", "a b", 4}, {"COPY", "x /y", 7}},
		},
		"dangling continuation": {text: "FROM scratch\nRUN a \\\n", wantErr: true},
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "Dockerfile")
			if err := os.WriteFile(file, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := Parse(file)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
