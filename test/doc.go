// Package test holds runbookbot's end-to-end tests: the whole program, a
// real store on disk, real processes killed mid-flight, and the chat
// emulators the bot talks to through its production code paths.
package test
