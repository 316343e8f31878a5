package gitops_pipeline

test_all_resources_missing_denied if {
	bad := deployment_without("/spec/template/spec/containers/0/resources")
	deny["Deployment/web: container 'app' must set a CPU request (resources.requests.cpu)"] with input as bad
	deny["Deployment/web: container 'app' must set a memory request (resources.requests.memory)"] with input as bad
	deny["Deployment/web: container 'app' must set a memory limit (resources.limits.memory)"] with input as bad
	count(deny) == 3 with input as bad
}

test_cpu_request_missing_denied if {
	bad := deployment_without("/spec/template/spec/containers/0/resources/requests/cpu")
	deny["Deployment/web: container 'app' must set a CPU request (resources.requests.cpu)"] with input as bad
	count(deny) == 1 with input as bad
}

test_memory_request_missing_denied if {
	bad := deployment_without("/spec/template/spec/initContainers/0/resources/requests/memory")
	deny["Deployment/web: container 'init' must set a memory request (resources.requests.memory)"] with input as bad
	count(deny) == 1 with input as bad
}

test_memory_limit_missing_denied if {
	bad := deployment_without("/spec/template/spec/containers/0/resources/limits")
	deny["Deployment/web: container 'app' must set a memory limit (resources.limits.memory)"] with input as bad
	count(deny) == 1 with input as bad
}

test_empty_resource_value_denied if {
	bad := deployment_patched("replace", "/spec/template/spec/containers/0/resources/requests/cpu", "")
	deny["Deployment/web: container 'app' must set a CPU request (resources.requests.cpu)"] with input as bad
}

test_cpu_limit_and_integer_quantities_allowed if {
	ok := deployment_patched("replace", "/spec/template/spec/containers/0/resources", {
		"requests": {"cpu": 1, "memory": "1Gi"},
		"limits": {"cpu": 2, "memory": "1Gi"},
	})
	count(deny) == 0 with input as ok
}

test_ephemeral_containers_need_no_resources if {
	ephemeral := object.remove(good_init_container, ["resources"])
	ok := deployment_patched("add", "/spec/template/spec/ephemeralContainers", [object.union(ephemeral, {"name": "debug"})])
	count(deny) == 0 with input as ok
}
