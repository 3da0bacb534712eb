//go:build race

package xds

// raceStackFactor is how much larger the race detector makes every
// goroutine's stack (it doubles the runtime's stack guard,
// sys.StackGuardMultiplier); the agent is built without it.
const raceStackFactor = 2
