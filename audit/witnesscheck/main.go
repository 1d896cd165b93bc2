// Command witnesscheck opens a co-signed Patterm audit checkpoint with Go's own
// golang.org/x/mod/sumdb/note and reports whether every key given signed it: the log's key and
// the witness's (manage.py audit_witness). It shares no code with Patterm.
//
//	witnesscheck -note cosigned.txt -key LOG_VERIFIER_KEY -key WITNESS_VERIFIER_KEY
//
// Exit status 0: every key signed; 1: a key did not sign (or its signature is false);
// 2: unreadable input.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

type keys []string

func (k *keys) String() string     { return strings.Join(*k, ",") }
func (k *keys) Set(v string) error { *k = append(*k, v); return nil }

func main() {
	var path string
	var required keys
	flag.StringVar(&path, "note", "", "the co-signed checkpoint (a signed note)")
	flag.Var(&required, "key", "a verifier key (name+hash+base64) that must have signed; repeat")
	flag.Parse()
	if path == "" || len(required) == 0 {
		fmt.Fprintln(os.Stderr, "usage: witnesscheck -note FILE -key VERIFIER_KEY [-key ...]")
		os.Exit(2)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		fmt.Println("UNREADABLE:", err)
		os.Exit(2)
	}
	var verifiers []note.Verifier
	for _, key := range required {
		verifier, err := note.NewVerifier(key)
		if err != nil {
			fmt.Printf("UNREADABLE: the verifier key %q: %v\n", key, err)
			os.Exit(2)
		}
		verifiers = append(verifiers, verifier)
	}
	opened, err := note.Open(text, note.VerifierList(verifiers...))
	if err != nil {
		fmt.Println("BROKEN:", err)
		os.Exit(1)
	}
	signed := map[uint32]bool{}
	for _, sig := range opened.Sigs {
		signed[sig.Hash] = true
	}
	var names []string
	for _, verifier := range verifiers {
		if !signed[verifier.KeyHash()] {
			fmt.Printf("BROKEN: %s did not sign the checkpoint\n", verifier.Name())
			os.Exit(1)
		}
		names = append(names, verifier.Name())
	}
	fmt.Printf("COSIGNED: signed by %s\n", strings.Join(names, ", "))
}
