# Container security context: no privileged containers, no privilege
# escalation, no root user.
package gitops_pipeline

import data.gitops_pipeline.lib

deny contains msg if {
	some c in lib.all_containers
	c.securityContext.privileged == true
	msg := lib.container_msg(c, "must not be privileged (securityContext.privileged: true)")
}

deny contains msg if {
	some c in lib.all_containers
	not disallows_privilege_escalation(c)
	msg := lib.container_msg(c, "must set securityContext.allowPrivilegeEscalation: false")
}

# runAsNonRoot may be set on the pod; a container-level value overrides it.
deny contains msg if {
	some c in lib.all_containers
	not run_as_non_root(c)
	msg := lib.container_msg(c, "must set securityContext.runAsNonRoot: true (pod or container level)")
}

run_as_non_root(c) if c.securityContext.runAsNonRoot == true

run_as_non_root(c) if {
	not has_container_run_as_non_root(c)
	lib.pod_spec.securityContext.runAsNonRoot == true
}

has_container_run_as_non_root(c) if is_boolean(c.securityContext.runAsNonRoot)

disallows_privilege_escalation(c) if c.securityContext.allowPrivilegeEscalation == false
