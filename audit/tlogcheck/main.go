// Command tlogcheck verifies a Patterm audit export with Go's own transparency-log code:
// golang.org/x/mod/sumdb/note opens every checkpoint (C2SP signed note, Ed25519) and
// golang.org/x/mod/sumdb/tlog rebuilds the RFC 9162 tree from the export's leaves and checks
// every root, every inclusion proof given (-inclusion) and consistency proofs from a kept
// checkpoint (-consistency with -kept). It shares no code with Patterm: an independent check.
//
//	tlogcheck -export audit.jsonl [-inclusion proof.json]... [-consistency proof.json -kept old.txt]
//
// Exit status 0: verified; 1: broken (the problem is printed); 2: unreadable input.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

type line struct {
	Type         string   `json:"type"`
	Format       string   `json:"format"`
	Origin       string   `json:"origin"`
	VerifierKeys []string `json:"verifier_keys"`
	LeafIndex    *int64   `json:"leaf_index"`
	Leaf         *string  `json:"leaf"`
	Note         string   `json:"note"`
}

type inclusionProof struct {
	LeafIndex  int64    `json:"leaf_index"`
	TreeSize   int64    `json:"tree_size"`
	Leaf       string   `json:"leaf"`
	Proof      []string `json:"proof"`
	Checkpoint string   `json:"checkpoint"`
}

type consistencyProof struct {
	From       int64    `json:"from"`
	To         int64    `json:"to"`
	Proof      []string `json:"proof"`
	Checkpoint string   `json:"checkpoint"`
}

type broken struct{ msg string }

func (b broken) Error() string { return b.msg }

func brokenf(format string, args ...interface{}) error {
	return broken{fmt.Sprintf(format, args...)}
}

// storage holds every stored hash of the tree, in tlog's StoredHashIndex order.
type storage []tlog.Hash

func (s storage) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(s)) {
			return nil, fmt.Errorf("no stored hash %d", x)
		}
		out[i] = s[x]
	}
	return out, nil
}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

// openCheckpoint verifies the note's signature and parses the C2SP checkpoint body.
func openCheckpoint(text string, verifiers note.Verifiers) (checkpoint, error) {
	n, err := note.Open([]byte(text), verifiers)
	if err != nil {
		var unknown *note.UnverifiedNoteError
		if errors.As(err, &unknown) {
			var names []string
			for _, sig := range unknown.Note.UnverifiedSigs {
				names = append(names, fmt.Sprintf("%s+%08x", sig.Name, sig.Hash))
			}
			return checkpoint{}, brokenf("checkpoint signed by no known key (only by unknown %s)", strings.Join(names, ", "))
		}
		return checkpoint{}, brokenf("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		return checkpoint{}, brokenf("checkpoint body is not origin, size, root")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return checkpoint{}, brokenf("checkpoint size %q is not a number", lines[1])
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		return checkpoint{}, brokenf("checkpoint root %q is not a hash", lines[2])
	}
	return checkpoint{origin: lines[0], size: size, root: root}, nil
}

func decodeHashes(values []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(values))
	for i, v := range values {
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(raw) != tlog.HashSize {
			return nil, fmt.Errorf("proof hash %d is not a base64 SHA-256 hash", i)
		}
		copy(out[i][:], raw)
	}
	return out, nil
}

func readJSON(path string, target interface{}) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, target)
}

func run() (string, error) {
	var inclusions, consistencies, kept files
	export := flag.String("export", "", "the JSON Lines export of manage.py export_audit")
	flag.Var(&inclusions, "inclusion", "an inclusion proof (JSON) to check; repeatable")
	flag.Var(&consistencies, "consistency", "a consistency proof (JSON) from -kept; repeatable")
	flag.Var(&kept, "kept", "the checkpoint (signed note) kept earlier, for -consistency")
	flag.Parse()
	if *export == "" {
		return "", errors.New("usage: tlogcheck -export FILE [-inclusion P]... [-consistency P -kept C]")
	}
	file, err := os.Open(*export)
	if err != nil {
		return "", err
	}
	defer file.Close()
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 1<<20), 1<<26)
	if !scanner.Scan() {
		return "", errors.New("the export is empty")
	}
	var header line
	if err := json.Unmarshal(scanner.Bytes(), &header); err != nil || header.Type != "header" {
		return "", errors.New("the export has no header line")
	}
	var list []note.Verifier
	for _, key := range header.VerifierKeys {
		verifier, err := note.NewVerifier(key)
		if err != nil {
			return "", fmt.Errorf("verifier key %q: %v", key, err)
		}
		list = append(list, verifier)
	}
	verifiers := note.VerifierList(list...)

	var hashes storage
	var size, checkpoints, lastSize int64
	var lastRoot tlog.Hash
	for number := 2; scanner.Scan(); number++ {
		var item line
		if err := json.Unmarshal(scanner.Bytes(), &item); err != nil {
			return "", fmt.Errorf("line %d is not JSON", number)
		}
		switch item.Type {
		case "event":
			if item.LeafIndex == nil || item.Leaf == nil {
				return "", fmt.Errorf("line %d: an event without leaf_index or leaf", number)
			}
			if *item.LeafIndex != size {
				return "", brokenf("line %d: leaf %d missing or out of order (found %d)", number, size, *item.LeafIndex)
			}
			stored, err := tlog.StoredHashes(size, []byte(*item.Leaf), hashes)
			if err != nil {
				return "", err
			}
			hashes = append(hashes, stored...)
			size++
		case "checkpoint":
			c, err := openCheckpoint(item.Note, verifiers)
			if err != nil {
				return "", brokenf("line %d: %v", number, err)
			}
			if c.origin != header.Origin {
				return "", brokenf("line %d: checkpoint of log %q, not %q", number, c.origin, header.Origin)
			}
			if checkpoints > 0 && c.size == lastSize && c.root != lastRoot {
				return "", brokenf("line %d: two checkpoints of size %d with different roots: a fork", number, c.size)
			}
			if c.size < lastSize {
				return "", brokenf("line %d: checkpoint of size %d after one of %d: the tree shrank", number, c.size, lastSize)
			}
			if c.size != size {
				return "", brokenf("line %d: checkpoint signs %d leaves, %d precede it: tail cut or out of place", number, c.size, size)
			}
			root, err := tlog.TreeHash(size, hashes)
			if err != nil {
				return "", err
			}
			if root != c.root {
				return "", brokenf("the tree of %d leaves does not have the signed root: a leaf among %d to %d was changed", size, lastSize, size-1)
			}
			checkpoints++
			lastSize, lastRoot = c.size, c.root
		case "legacy_checkpoint":
			// The hash chain before the tree: checked by verify_export.py, not a tlog format.
		default:
			return "", fmt.Errorf("line %d: unknown line type %q", number, item.Type)
		}
	}
	if err := scanner.Err(); err != nil {
		return "", err
	}
	if size > 0 && checkpoints == 0 {
		return "", brokenf("the export holds no checkpoint")
	}
	report := []string{fmt.Sprintf("export: %d leaves, %d checkpoints verified by sumdb/note and sumdb/tlog", size, checkpoints)}

	// A kept checkpoint: the export's tree must have its root at its size (a fork or a tree that
	// shrank below it fails), whether or not a consistency proof is given too.
	for _, path := range kept {
		text, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		old, err := openCheckpoint(string(text), verifiers)
		if err != nil {
			return "", brokenf("%s: %v", path, err)
		}
		if old.size > size {
			return "", brokenf("%s: the tree shrank: the kept checkpoint signs %d leaves, the export has %d", path, old.size, size)
		}
		root, err := tlog.TreeHash(old.size, hashes)
		if err != nil {
			return "", err
		}
		if root != old.root {
			return "", brokenf("%s: a fork: the export's tree of %d leaves has another root than the kept checkpoint of size %d", path, old.size, old.size)
		}
		report = append(report, fmt.Sprintf("kept: the export's tree of %d leaves has the kept checkpoint's root", old.size))
	}

	for _, path := range inclusions {
		var p inclusionProof
		if err := readJSON(path, &p); err != nil {
			return "", fmt.Errorf("%s: %v", path, err)
		}
		c, err := openCheckpoint(p.Checkpoint, verifiers)
		if err != nil {
			return "", brokenf("%s: %v", path, err)
		}
		proof, err := decodeHashes(p.Proof)
		if err != nil {
			return "", fmt.Errorf("%s: %v", path, err)
		}
		if c.size != p.TreeSize {
			return "", brokenf("%s: proof for size %d, checkpoint of %d", path, p.TreeSize, c.size)
		}
		leaf := tlog.RecordHash([]byte(p.Leaf))
		if err := tlog.CheckRecord(proof, c.size, c.root, p.LeafIndex, leaf); err != nil {
			return "", brokenf("%s: leaf %d is not in the signed tree of %d: %v", path, p.LeafIndex, c.size, err)
		}
		if p.LeafIndex < size && hashes[tlog.StoredHashIndex(0, p.LeafIndex)] != leaf {
			return "", brokenf("%s: leaf %d differs from the export's", path, p.LeafIndex)
		}
		report = append(report, fmt.Sprintf("inclusion: leaf %d in the signed tree of %d", p.LeafIndex, c.size))
	}
	for _, path := range consistencies {
		if len(kept) != 1 {
			return "", errors.New("-consistency needs exactly one -kept checkpoint")
		}
		keptText, err := os.ReadFile(kept[0])
		if err != nil {
			return "", err
		}
		old, err := openCheckpoint(string(keptText), verifiers)
		if err != nil {
			return "", brokenf("%s: %v", kept[0], err)
		}
		var p consistencyProof
		if err := readJSON(path, &p); err != nil {
			return "", fmt.Errorf("%s: %v", path, err)
		}
		newer, err := openCheckpoint(p.Checkpoint, verifiers)
		if err != nil {
			return "", brokenf("%s: %v", path, err)
		}
		if p.From != old.size || p.To != newer.size {
			return "", brokenf("%s: proof from %d to %d, checkpoints of %d and %d", path, p.From, p.To, old.size, newer.size)
		}
		proof, err := decodeHashes(p.Proof)
		if err != nil {
			return "", fmt.Errorf("%s: %v", path, err)
		}
		if err := tlog.CheckTree(proof, newer.size, newer.root, old.size, old.root); err != nil {
			return "", brokenf("%s: the tree of %d does not extend the kept one of %d: %v", path, newer.size, old.size, err)
		}
		report = append(report, fmt.Sprintf("consistency: the tree of %d extends the kept one of %d", newer.size, old.size))
	}
	return strings.Join(report, "\n"), nil
}

func main() {
	report, err := run()
	if err != nil {
		var b broken
		if errors.As(err, &b) {
			fmt.Println("BROKEN:", b.msg)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "tlogcheck:", err)
		os.Exit(2)
	}
	fmt.Println(report)
	fmt.Println("OK")
}
