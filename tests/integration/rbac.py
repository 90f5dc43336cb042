"""A ServiceAccount bound to a namespaced Role, and an API client that acts as it."""

from __future__ import annotations

from kubernetes import client

from stackscaler.devtools.controlplane import ControlPlane


def client_as_role(
    admin: client.ApiClient,
    plane: ControlPlane,
    namespace: str,
    name: str,
    rules: list[client.V1PolicyRule],
) -> client.ApiClient:
    """Create ServiceAccount, Role and RoleBinding ``name``; return a client with its token."""
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    rbac.create_namespaced_role(
        namespace, client.V1Role(metadata=client.V1ObjectMeta(name=name), rules=rules)
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=name),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name=name
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=namespace)],
        ),
    )
    token = core.create_namespaced_service_account_token(
        name,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    ).status.token
    conf = client.Configuration()
    conf.host, conf.ssl_ca_cert = plane.server, str(plane.ca_file)
    conf.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(conf)
