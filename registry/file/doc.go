// Package file is a registry source that reads the services to export from
// a YAML file and follows its changes.
//
// The file's shape is Document; README.md's section "The registry file"
// shows every field, and registry.schema.json, generated from the types
// (meshfed registry schema prints it), is what editors validate it with.
// testdata/services.yaml is a commented example.
//
// Reading is strict: an unknown field, a value of the wrong type, a
// duplicate key and every invalid value is an error that names the file,
// the line, the field path and the value, such as
//
//	services.yaml:7: services[0].ports[0].protocol: "FOO" is not one of HTTP HTTPS GRPC HTTP2 MONGO TCP TLS MTLS
//
// Two services with one name, fqdn or SNI are an error too. An empty file,
// or one without services, is an empty set.
//
// The file is read as what it claims to be (internal/untrusted): a regular
// file, not a pipe or a device; reached through symbolic links that stay
// inside its folder, as a ConfigMap's do (one out of it, to /etc/shadow
// say, is refused before the file is read); no larger than
// exports.maxFileBytes, checked before it is parsed; with its YAML aliases
// bounded before anything expands them. A message quotes at most a short,
// escaped excerpt of the value at fault, and names a key that is not a
// field's name by its length only.
//
// The Source watches the file's directory rather than the file, because
// editors and Kubernetes ConfigMap volumes replace a file by renaming
// another one (or swapping a symlink) over it, and a watch on the old file
// would see nothing of the new one. Bursts of events are coalesced, an
// unchanged set is not handed on, and a file that turns bad or disappears
// while running is logged while the last good set stays. So is a file that
// turns zero bytes long, which is what a writer that truncates first shows
// for a moment: write "services: []" to withdraw every export. A writer
// should replace the file by renaming a complete one over it, as editors and
// ConfigMaps do; one that writes in place may be read half-written.
package file
