//go:build !linux

// Command soak runs on Linux only: it sends signals to its nodes and reads /proc.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "soak: Linux only (signals, /proc)")
	os.Exit(2)
}
