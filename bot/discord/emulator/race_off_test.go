//go:build !race

package emulator

const raceDetector = false
