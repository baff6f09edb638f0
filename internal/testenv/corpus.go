package testenv

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"testing"
)

// OpenikedCorpus returns up to limit messages (all when limit <= 0) of the
// openiked OSS-Fuzz corpus of raw IKE messages in the test data
// (testdata/corpus/ike-openiked-corpus.tar.gz, see testdata/README.md), in
// archive order.
func OpenikedCorpus(t testing.TB, limit int) [][]byte {
	t.Helper()
	f, err := os.Open(TestdataFile(t, "corpus/ike-openiked-corpus.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out [][]byte
	for limit <= 0 || len(out) < limit {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
