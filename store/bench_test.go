package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// serviceSize is about what a marshaled FederatedService with two
// endpoints, two instances and a SAN takes.
const serviceSize = 400

// BenchmarkRestore100k is the start-up path: open a store holding 100,000
// imports over 10 peers and read them all.
func BenchmarkRestore100k(b *testing.B) {
	path := filepath.Join(b.TempDir(), "meshfed.db")
	s, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	svc := make([]byte, serviceSize)
	for p := range 10 {
		batch := make([]Record, 0, 10000)
		for i := range 10000 {
			batch = append(batch, Record{Peer: fmt.Sprintf("mesh-%d", p), ResourceID: fmt.Sprintf("svc-%05d.mesh-%d.example", i, p), Service: svc})
		}
		if err := s.PutImports(batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.SetStale("mesh-3", time.Now()); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		s, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		rs, err := s.Imports()
		if err != nil {
			b.Fatal(err)
		}
		if len(rs) != 100000 {
			b.Fatalf("%d records", len(rs))
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutImport is the cost of one import before its ACK: one fsynced
// transaction.
func BenchmarkPutImport(b *testing.B) {
	s, _ := open(b)
	svc := make([]byte, serviceSize)
	i := 0
	for b.Loop() {
		if err := s.PutImport(Record{Peer: "mesh-b", ResourceID: fmt.Sprintf("svc-%d", i%1000), Service: svc}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkSetStale100k marks 100,000 imports of one peer stale: what a
// dropped stream of a large peer costs.
func BenchmarkSetStale100k(b *testing.B) {
	s, _ := open(b)
	svc := make([]byte, serviceSize)
	batch := make([]Record, 0, 100000)
	for i := range 100000 {
		batch = append(batch, Record{Peer: "mesh-b", ResourceID: fmt.Sprintf("svc-%06d", i), Service: svc})
	}
	if err := s.PutImports(batch); err != nil {
		b.Fatal(err)
	}
	t := time.Now()
	for b.Loop() {
		t = t.Add(time.Second)
		if err := s.SetStale("mesh-b", t); err != nil {
			b.Fatal(err)
		}
	}
}
