package store

import (
	"encoding/binary"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// bbolt's page layout (go.etcd.io/bbolt/internal/common/page.go), in the
// machine's byte order: a 16-byte header (id, flags, count, overflow),
// then count elements of 16 bytes. A branch element is the offset of its
// key from the element, the key's size and the child page's id.
const (
	pageHeaderSize    = 16
	branchElementSize = 16
	branchPageFlag    = 0x01
	freelistPageFlag  = 0x10
)

// pages checks the page trees of a store from the file itself, before
// anything walks them through bbolt. bbolt trusts what a page says: a
// damaged overflow count makes its consistency check loop over billions
// of pages, a page that is its own descendant makes a cursor loop forever,
// and a damaged key offset makes the check, on a goroutine of its own,
// fault and end the process. Reading from the file rather than the memory
// map, nothing here can fault.
type pages struct {
	f         io.ReaderAt
	pageSize  int
	highWater uint64 // the pages the meta page says the file has
	seen      map[uint64]bool
}

func newPages(tx *bolt.Tx, f io.ReaderAt) *pages {
	ps := tx.DB().Info().PageSize
	return &pages{f: f, pageSize: ps, highWater: uint64(tx.Size()) / uint64(ps), seen: map[uint64]bool{}}
}

// freelist checks that the free list's page, with its overflow pages,
// lies within the file. It runs after every tree was checked: the free
// list's page is the first that no tree reaches and the free list itself
// does not list, and that says it is the free list (the other pages a
// tree does not reach are the free list's overflow pages, and in a
// damaged file anything). A scan for any page that looks like one would
// take a stored value's bytes, which a peer chose, for a page.
func (p *pages) freelist(tx *bolt.Tx) error {
	head := make([]byte, pageHeaderSize)
	for id := uint64(2); id < p.highWater; id++ {
		if p.seen[id] {
			continue
		}
		if info, err := tx.Page(int(id)); err != nil || info == nil || info.Type == "free" {
			continue
		}
		if _, err := p.f.ReadAt(head, int64(id)*int64(p.pageSize)); err != nil {
			return fmt.Errorf("page %d: %w", id, err)
		}
		if binary.NativeEndian.Uint64(head) != id || binary.NativeEndian.Uint16(head[8:]) != freelistPageFlag {
			continue
		}
		if overflow := uint64(binary.NativeEndian.Uint32(head[12:])); id+overflow >= p.highWater {
			return fmt.Errorf("free list page %d: %d overflow pages reach past the file's %d pages", id, overflow, p.highWater)
		}
		return nil
	}
	return nil
}

// tree checks every page under root: each within the file with its
// overflow pages, reached once in the whole file, and each branch
// element's key within its page.
func (p *pages) tree(root uint64) error {
	if root < 2 || root >= p.highWater {
		return fmt.Errorf("page %d is outside the file's %d pages", root, p.highWater)
	}
	head := make([]byte, pageHeaderSize)
	if _, err := p.f.ReadAt(head, int64(root)*int64(p.pageSize)); err != nil {
		return fmt.Errorf("page %d: %w", root, err)
	}
	overflow := uint64(binary.NativeEndian.Uint32(head[12:]))
	if root+overflow >= p.highWater {
		return fmt.Errorf("page %d: %d overflow pages reach past the file's %d pages", root, overflow, p.highWater)
	}
	for id := root; id <= root+overflow; id++ {
		if p.seen[id] {
			return fmt.Errorf("page %d is reached twice: the tree of pages is damaged", id)
		}
		p.seen[id] = true
	}
	if binary.NativeEndian.Uint16(head[8:])&branchPageFlag == 0 {
		return nil // a leaf, which readAll reads
	}
	count := int(binary.NativeEndian.Uint16(head[10:]))
	page := make([]byte, (overflow+1)*uint64(p.pageSize))
	if _, err := p.f.ReadAt(page, int64(root)*int64(p.pageSize)); err != nil {
		return fmt.Errorf("branch page %d: %w", root, err)
	}
	if pageHeaderSize+count*branchElementSize > len(page) {
		return fmt.Errorf("branch page %d: its %d elements do not fit in it", root, count)
	}
	for i := range count {
		at := pageHeaderSize + i*branchElementSize
		pos := uint64(binary.NativeEndian.Uint32(page[at:]))
		ksize := uint64(binary.NativeEndian.Uint32(page[at+4:]))
		if uint64(at)+pos+ksize > uint64(len(page)) {
			return fmt.Errorf("branch page %d: the key of element %d lies outside the page", root, i)
		}
		if err := p.tree(binary.NativeEndian.Uint64(page[at+8:])); err != nil {
			return err
		}
	}
	return nil
}
