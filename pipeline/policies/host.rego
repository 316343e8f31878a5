# No access to host namespaces or the host filesystem.
package gitops_pipeline

import data.gitops_pipeline.lib

deny contains msg if {
	some field in ["hostNetwork", "hostPID", "hostIPC"]
	lib.pod_spec[field] == true
	msg := lib.resource_msg(sprintf("must not set %s: true", [field]))
}

deny contains msg if {
	some v in object.get(lib.pod_spec, "volumes", [])
	object.get(v, "hostPath", null) != null
	msg := lib.resource_msg(sprintf("volume '%s' must not use hostPath", [object.get(v, "name", "<unnamed>")]))
}
