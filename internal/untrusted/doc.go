// Package untrusted reads what comes from outside the agent's own code as
// hostile until checked: files (the configuration, the registry file,
// certificates), YAML documents, and the values that error messages and
// logs repeat.
//
// A file is read only when it is what it claims to be: a regular file, not
// a pipe, a device or a directory; no larger than a limit, checked before
// a byte is parsed; and, unless the caller allows links anywhere (mounted
// secrets), reached through symbolic links that stay inside its own
// folder, as a Kubernetes ConfigMap's ..data link does. A YAML document is
// refused before anything expands its aliases when it holds too many or
// when they would make it much larger than it is written (the "billion
// laughs"). A value quoted in a message is one short, escaped excerpt of
// its first line, so that a message about a file never carries the file.
package untrusted
