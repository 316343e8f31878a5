# Long-running workloads need readiness and liveness probes on every regular
# container (not on initContainers, and not for Job/CronJob/Pod/ReplicaSet).
package gitops_pipeline

import data.gitops_pipeline.lib

deny contains msg if {
	lib.long_running_kinds[lib.kind]
	some c in lib.main_containers
	some probe in ["readinessProbe", "livenessProbe"]
	not has_probe(c, probe)
	msg := lib.container_msg(c, sprintf("must define a %s", [probe]))
}

has_probe(c, probe) if is_object(c[probe])
