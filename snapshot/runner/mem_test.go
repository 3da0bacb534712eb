package runner

import (
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/meshfed/meshfed/model"
)

// memSource is a catalog in memory.
type memSource struct {
	mu      sync.Mutex
	imports map[model.Key]model.Import
	exports map[string]model.Export
	subs    map[*memSub]struct{}
}

func newMemSource() *memSource {
	return &memSource{imports: map[model.Key]model.Import{}, exports: map[string]model.Export{}, subs: map[*memSub]struct{}{}}
}

func importKey(peer, id string) model.Key {
	return model.Key{Kind: model.KindImport, Peer: peer, ID: id}
}

func (s *memSource) putImport(imp model.Import) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := importKey(imp.Peer, imp.ResourceID)
	s.imports[k] = imp
	s.notify(k)
}

func (s *memSource) deleteImport(peer, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := importKey(peer, id)
	delete(s.imports, k)
	s.notify(k)
}

func (s *memSource) setExports(exps []model.Export) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name := range s.exports {
		s.notify(model.Key{Kind: model.KindExport, ID: name})
	}
	clear(s.exports)
	for _, e := range exps {
		s.exports[e.Name] = e
		s.notify(model.Key{Kind: model.KindExport, ID: e.Name})
	}
}

func (s *memSource) notify(k model.Key) {
	for sub := range s.subs {
		sub.dirty[k] = struct{}{}
		select {
		case sub.ch <- struct{}{}:
		default:
		}
	}
}

func (s *memSource) Subscribe() Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := &memSub{src: s, ch: make(chan struct{}, 1), dirty: map[model.Key]struct{}{}}
	s.subs[sub] = struct{}{}
	return sub
}

func (s *memSource) Import(peer, id string) (model.Import, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	imp, ok := s.imports[importKey(peer, id)]
	return imp, ok
}

func (s *memSource) Export(name string) (model.Export, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.exports[name]
	return e, ok
}

func (s *memSource) Imports() []model.Import {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := slices.SortedFunc(maps.Keys(s.imports), model.CompareKeys)
	out := make([]model.Import, len(keys))
	for i, k := range keys {
		out[i] = s.imports[k]
	}
	return out
}

func (s *memSource) Exports() []model.Export {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]model.Export, 0, len(s.exports))
	for _, name := range sortedKeys(s.exports) {
		out = append(out, s.exports[name])
	}
	return out
}

type memSub struct {
	src   *memSource
	ch    chan struct{}
	dirty map[model.Key]struct{}
}

func (s *memSub) C() <-chan struct{} { return s.ch }

func (s *memSub) Drain() []model.Key {
	s.src.mu.Lock()
	defer s.src.mu.Unlock()
	out := slices.SortedFunc(maps.Keys(s.dirty), model.CompareKeys)
	clear(s.dirty)
	return out
}

func (s *memSub) Close() {
	s.src.mu.Lock()
	defer s.src.mu.Unlock()
	delete(s.src.subs, s)
}

// memKV is a key-value store in memory whose next write can be made to
// fail.
type memKV struct {
	mu     sync.Mutex
	m      map[string]string
	writes int
	fail   error
}

func newMemKV() *memKV { return &memKV{m: map[string]string{}} }

func (kv *memKV) ForEach(fn func(key string, value []byte) error) error {
	kv.mu.Lock()
	snapshot := maps.Clone(kv.m)
	kv.mu.Unlock()
	for _, k := range sortedKeys(snapshot) {
		if err := fn(k, []byte(snapshot[k])); err != nil {
			return err
		}
	}
	return nil
}

func (kv *memKV) Apply(puts map[string][]byte, dels []string) error {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if len(puts) == 0 && len(dels) == 0 {
		return nil
	}
	if err := kv.fail; err != nil {
		kv.fail = nil
		return err
	}
	kv.writes++
	for _, k := range dels {
		delete(kv.m, k)
	}
	for k, v := range puts {
		kv.m[k] = string(v)
	}
	return nil
}

func (kv *memKV) content() map[string]string {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return maps.Clone(kv.m)
}

var errDiskFull = errors.New("disk full")
