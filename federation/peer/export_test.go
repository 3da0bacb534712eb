package peer

// SampleFirst is how many of the warnings any client can cause are
// logged each minute before sampling.
const SampleFirst = sampleFirst
