# Workloads and their pod templates must carry app.kubernetes.io/name.
package gitops_pipeline

import data.gitops_pipeline.lib

name_label := "app.kubernetes.io/name"

deny contains msg if {
	lib.is_workload
	not has_name_label(object.get(input, ["metadata", "labels"], {}))
	msg := lib.resource_msg(sprintf("must have label '%s' in metadata.labels", [name_label]))
}

deny contains msg if {
	lib.is_workload
	lib.pod_template_path
	not has_name_label(lib.pod_template_labels)
	msg := lib.resource_msg(sprintf("must have label '%s' in %s", [name_label, lib.pod_template_labels_path]))
}

has_name_label(labels) if {
	v := labels[name_label]
	is_string(v)
	v != ""
}
