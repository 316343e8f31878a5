package gitops_pipeline

test_host_network_denied if {
	bad := deployment_patched("add", "/spec/template/spec/hostNetwork", true)
	deny["Deployment/web: must not set hostNetwork: true"] with input as bad
	count(deny) == 1 with input as bad
}

test_host_pid_denied if {
	bad := deployment_patched("add", "/spec/template/spec/hostPID", true)
	deny["Deployment/web: must not set hostPID: true"] with input as bad
	count(deny) == 1 with input as bad
}

test_host_ipc_denied if {
	bad := deployment_patched("add", "/spec/template/spec/hostIPC", true)
	deny["Deployment/web: must not set hostIPC: true"] with input as bad
}

test_host_namespaces_false_allowed if {
	ok := json.patch(good_deployment, [
		{"op": "add", "path": "/spec/template/spec/hostNetwork", "value": false},
		{"op": "add", "path": "/spec/template/spec/hostPID", "value": false},
		{"op": "add", "path": "/spec/template/spec/hostIPC", "value": false},
	])
	count(deny) == 0 with input as ok
}

test_host_path_volume_denied if {
	bad := deployment_patched("add", "/spec/template/spec/volumes", [
		{"name": "tmp", "emptyDir": {}},
		{"name": "docker-sock", "hostPath": {"path": "/var/run/docker.sock"}},
	])
	deny["Deployment/web: volume 'docker-sock' must not use hostPath"] with input as bad
	count(deny) == 1 with input as bad
}

test_cronjob_host_path_denied if {
	bad := json.patch(good_workloads.CronJob, [{"op": "add", "path": "/spec/jobTemplate/spec/template/spec/volumes", "value": [{"name": "root", "hostPath": {"path": "/"}}]}])
	deny["CronJob/web: volume 'root' must not use hostPath"] with input as bad
}
