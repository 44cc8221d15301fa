//go:build race

package emulator

const raceDetector = true
