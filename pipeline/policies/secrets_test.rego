package gitops_pipeline

secret(extra) := object.union({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "type": "Opaque"}, extra)

test_secret_with_data_denied if {
	bad := secret({"data": {"password": "aHVudGVyMg=="}})
	deny["Secret/db: must not contain plaintext data; use a SealedSecret (bitnami.com/v1alpha1) instead"] with input as bad
	count(deny) == 1 with input as bad
}

test_secret_with_string_data_denied if {
	bad := secret({"stringData": {"password": "hunter2"}})
	deny["Secret/db: must not contain plaintext stringData; use a SealedSecret (bitnami.com/v1alpha1) instead"] with input as bad
}

test_secret_with_both_denied if {
	bad := secret({"data": {"a": "Yg=="}, "stringData": {"c": "d"}})
	deny["Secret/db: must not contain plaintext data/stringData; use a SealedSecret (bitnami.com/v1alpha1) instead"] with input as bad
	count(deny) == 1 with input as bad
}

test_secret_without_data_allowed if {
	count(deny) == 0 with input as secret({})
	count(deny) == 0 with input as secret({"data": {}})
	count(deny) == 0 with input as secret({"data": null})
	count(deny) == 0 with input as secret({"type": "kubernetes.io/service-account-token", "metadata": {"annotations": {"kubernetes.io/service-account.name": "web"}}})
}

test_sealed_secret_allowed if {
	sealed := {
		"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
		"metadata": {"name": "db", "namespace": "web"},
		"spec": {"encryptedData": {"password": "AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq"}, "template": {"metadata": {"name": "db"}}},
	}
	count(deny) == 0 with input as sealed
}
