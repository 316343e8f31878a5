package gitops_pipeline

test_privileged_container_denied if {
	bad := deployment_patched("add", "/spec/template/spec/containers/0/securityContext/privileged", true)
	deny["Deployment/web: container 'app' must not be privileged (securityContext.privileged: true)"] with input as bad
}

test_privileged_init_container_denied if {
	bad := deployment_patched("add", "/spec/template/spec/initContainers/0/securityContext/privileged", true)
	deny["Deployment/web: container 'init' must not be privileged (securityContext.privileged: true)"] with input as bad
}

test_privileged_ephemeral_container_denied if {
	ephemeral := object.union(good_init_container, {"name": "debug", "securityContext": {"privileged": true}})
	bad := deployment_patched("add", "/spec/template/spec/ephemeralContainers", [ephemeral])
	deny["Deployment/web: container 'debug' must not be privileged (securityContext.privileged: true)"] with input as bad
}

test_privileged_false_allowed if {
	ok := deployment_patched("add", "/spec/template/spec/containers/0/securityContext/privileged", false)
	count(deny) == 0 with input as ok
}

test_allow_privilege_escalation_missing_denied if {
	bad := deployment_without("/spec/template/spec/containers/0/securityContext/allowPrivilegeEscalation")
	deny["Deployment/web: container 'app' must set securityContext.allowPrivilegeEscalation: false"] with input as bad
	count(deny) == 1 with input as bad
}

test_allow_privilege_escalation_true_denied if {
	bad := deployment_patched("replace", "/spec/template/spec/initContainers/0/securityContext/allowPrivilegeEscalation", true)
	deny["Deployment/web: container 'init' must set securityContext.allowPrivilegeEscalation: false"] with input as bad
}

test_no_security_context_at_all_denied if {
	bad := deployment_without("/spec/template/spec/containers/0/securityContext")
	deny["Deployment/web: container 'app' must set securityContext.allowPrivilegeEscalation: false"] with input as bad

	# runAsNonRoot still comes from the pod level
	not deny["Deployment/web: container 'app' must set securityContext.runAsNonRoot: true (pod or container level)"] with input as bad
}

test_run_as_non_root_missing_denied if {
	bad := deployment_without("/spec/template/spec/securityContext/runAsNonRoot")
	deny["Deployment/web: container 'app' must set securityContext.runAsNonRoot: true (pod or container level)"] with input as bad
	deny["Deployment/web: container 'init' must set securityContext.runAsNonRoot: true (pod or container level)"] with input as bad
	count(deny) == 2 with input as bad
}

test_run_as_non_root_pod_level_false_denied if {
	bad := deployment_patched("replace", "/spec/template/spec/securityContext/runAsNonRoot", false)
	deny["Deployment/web: container 'app' must set securityContext.runAsNonRoot: true (pod or container level)"] with input as bad
}

test_run_as_non_root_on_every_container_allowed if {
	ok := json.patch(good_deployment, [
		{"op": "remove", "path": "/spec/template/spec/securityContext"},
		{"op": "add", "path": "/spec/template/spec/containers/0/securityContext/runAsNonRoot", "value": true},
		{"op": "add", "path": "/spec/template/spec/initContainers/0/securityContext/runAsNonRoot", "value": true},
	])
	count(deny) == 0 with input as ok
}

test_run_as_non_root_on_some_containers_denied if {
	bad := json.patch(good_deployment, [
		{"op": "remove", "path": "/spec/template/spec/securityContext"},
		{"op": "add", "path": "/spec/template/spec/containers/0/securityContext/runAsNonRoot", "value": true},
	])
	deny["Deployment/web: container 'init' must set securityContext.runAsNonRoot: true (pod or container level)"] with input as bad
	not deny["Deployment/web: container 'app' must set securityContext.runAsNonRoot: true (pod or container level)"] with input as bad
}

test_run_as_non_root_container_false_overrides_pod_true if {
	bad := deployment_patched("add", "/spec/template/spec/containers/0/securityContext/runAsNonRoot", false)
	deny["Deployment/web: container 'app' must set securityContext.runAsNonRoot: true (pod or container level)"] with input as bad
	count(deny) == 1 with input as bad
}
