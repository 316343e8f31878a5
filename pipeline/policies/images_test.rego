package gitops_pipeline

# The deny set for good_deployment with its container image replaced.
image_deny(image) := denies if {
	denies := deny with input as deployment_patched("replace", "/spec/template/spec/containers/0/image", image)
}

test_tagged_images_allowed if {
	every image in [
		"nginx:1.27",
		"ghcr.io/acme/web:1.2.3",
		"localhost:5000/app:v2",
		"docker.io/library/nginx:1.27-alpine",
		"nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"localhost:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	] {
		count(image_deny(image)) == 0
	}
}

test_untagged_image_denied if {
	image_deny("nginx")["Deployment/web: container 'app' image 'nginx' must have an explicit tag or digest"]
	count(image_deny("nginx")) == 1
}

test_registry_port_is_not_a_tag if {
	image_deny("localhost:5000/app")["Deployment/web: container 'app' image 'localhost:5000/app' must have an explicit tag or digest"]
	image_deny("registry.example.com:443/team/app")["Deployment/web: container 'app' image 'registry.example.com:443/team/app' must have an explicit tag or digest"]
}

test_empty_tag_denied if {
	image_deny("nginx:")["Deployment/web: container 'app' image 'nginx:' must have an explicit tag or digest"]
}

test_latest_tag_denied if {
	image_deny("nginx:latest")["Deployment/web: container 'app' image 'nginx:latest' must not use the 'latest' tag"]
	image_deny("localhost:5000/app:latest")["Deployment/web: container 'app' image 'localhost:5000/app:latest' must not use the 'latest' tag"]
	count(image_deny("nginx:latest")) == 1
}

test_latest_init_container_denied if {
	bad := deployment_patched("replace", "/spec/template/spec/initContainers/0/image", "busybox:latest")
	deny["Deployment/web: container 'init' image 'busybox:latest' must not use the 'latest' tag"] with input as bad
}

test_malformed_digest_denied if {
	image_deny("nginx@sha256:abc")["Deployment/web: container 'app' image 'nginx@sha256:abc' must have an explicit tag or digest"]
}

test_missing_image_denied if {
	bad := deployment_without("/spec/template/spec/containers/0/image")
	deny["Deployment/web: container 'app' has no image"] with input as bad
	count(deny) == 1 with input as bad
}
