# No plaintext Secrets in Git: commit a SealedSecret instead.
package gitops_pipeline

import data.gitops_pipeline.lib

deny contains msg if {
	input.kind == "Secret"
	input.apiVersion == "v1"
	fields := [f | some f in ["data", "stringData"]; has_entries(input[f])]
	count(fields) > 0
	msg := lib.resource_msg(sprintf(
		"must not contain plaintext %s; use a SealedSecret (bitnami.com/v1alpha1) instead",
		[concat("/", fields)],
	))
}

has_entries(x) if {
	is_object(x)
	count(x) > 0
}
