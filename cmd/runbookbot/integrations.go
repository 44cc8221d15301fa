package main

import "github.com/runbookbot/runbookbot/engine"

// registerIntegrations adds the step types that reach outside systems.
func registerIntegrations(reg *engine.Registry, o registryOptions) {}
