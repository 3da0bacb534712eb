package file

import _ "embed"

// SchemaJSON is the JSON Schema of a registry file, generated from
// Document and the types under it (schema_test.go checks it is current; go
// test ./registry/file -run TestSchema -update rewrites it). Editors
// validate and complete registry files with it; Parse's checks go further
// (DNS names, duplicates, what a mode allows), with the line of each fault.
//
//go:embed registry.schema.json
var SchemaJSON []byte
