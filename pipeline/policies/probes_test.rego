package gitops_pipeline

test_readiness_probe_missing_denied if {
	bad := deployment_without("/spec/template/spec/containers/0/readinessProbe")
	deny["Deployment/web: container 'app' must define a readinessProbe"] with input as bad
	count(deny) == 1 with input as bad
}

test_liveness_probe_missing_denied if {
	bad := deployment_without("/spec/template/spec/containers/0/livenessProbe")
	deny["Deployment/web: container 'app' must define a livenessProbe"] with input as bad
	count(deny) == 1 with input as bad
}

no_probes(kind) := json.patch(good_workloads[kind], [
	{"op": "remove", "path": sprintf("%s/containers/0/readinessProbe", [pod_spec_pointer[kind]])},
	{"op": "remove", "path": sprintf("%s/containers/0/livenessProbe", [pod_spec_pointer[kind]])},
])

test_long_running_workloads_need_probes if {
	every kind in ["Deployment", "StatefulSet", "DaemonSet", "Rollout"] {
		deny[sprintf("%s/web: container 'app' must define a readinessProbe", [kind])] with input as no_probes(kind)
		deny[sprintf("%s/web: container 'app' must define a livenessProbe", [kind])] with input as no_probes(kind)
	}
}

test_batch_workloads_need_no_probes if {
	every kind in ["Job", "CronJob", "Pod", "ReplicaSet"] {
		count(deny) == 0 with input as no_probes(kind)
	}
}

test_init_containers_need_no_probes if {
	# good_init_container has no probes and good_deployment passes
	not good_init_container.readinessProbe
	count(deny) == 0 with input as good_deployment
}
