package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/registry/file"
)

func TestRegistrySchemaPrintsTheSchema(t *testing.T) {
	code, out := checkCommand(t, "registry", "schema")
	require.Equal(t, 0, code)
	require.Equal(t, string(file.SchemaJSON), out)
	require.Contains(t, out, `"title": "meshfed registry file"`)
}
