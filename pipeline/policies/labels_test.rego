package gitops_pipeline

test_workload_label_missing_denied if {
	bad := deployment_without("/metadata/labels")
	deny["Deployment/web: must have label 'app.kubernetes.io/name' in metadata.labels"] with input as bad
	count(deny) == 1 with input as bad
}

test_pod_template_label_missing_denied if {
	bad := deployment_patched("replace", "/spec/template/metadata/labels", {"app": "web"})
	deny["Deployment/web: must have label 'app.kubernetes.io/name' in spec.template.metadata.labels"] with input as bad
	count(deny) == 1 with input as bad
}

test_empty_label_value_denied if {
	bad := deployment_patched("replace", "/metadata/labels", {"app.kubernetes.io/name": ""})
	deny["Deployment/web: must have label 'app.kubernetes.io/name' in metadata.labels"] with input as bad
}

test_cronjob_pod_template_label_missing_denied if {
	bad := json.patch(good_workloads.CronJob, [{"op": "remove", "path": "/spec/jobTemplate/spec/template/metadata"}])
	deny["CronJob/web: must have label 'app.kubernetes.io/name' in spec.jobTemplate.spec.template.metadata.labels"] with input as bad
	count(deny) == 1 with input as bad
}

test_pod_label_missing_denied if {
	bad := json.patch(good_workloads.Pod, [{"op": "remove", "path": "/metadata/labels"}])
	deny["Pod/web: must have label 'app.kubernetes.io/name' in metadata.labels"] with input as bad
	count(deny) == 1 with input as bad
}

test_rollout_labels_missing_denied if {
	bad := json.patch(good_workloads.Rollout, [
		{"op": "remove", "path": "/metadata/labels"},
		{"op": "remove", "path": "/spec/template/metadata/labels"},
	])
	deny["Rollout/web: must have label 'app.kubernetes.io/name' in metadata.labels"] with input as bad
	deny["Rollout/web: must have label 'app.kubernetes.io/name' in spec.template.metadata.labels"] with input as bad
	count(deny) == 2 with input as bad
}

test_non_workloads_need_no_label if {
	count(deny) == 0 with input as {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
}
