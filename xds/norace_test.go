//go:build !race

package xds

// raceStackFactor: see race_test.go.
const raceStackFactor = 1
