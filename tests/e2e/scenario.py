"""One scenario through the Python client generated from openapi/openapi.json.

Usage: scenario.py BASE_URL USERNAME PASSWORD  (the generated package `pyclient` on PYTHONPATH)
Every call goes through the generated functions and models; no hand-written requests.
"""

import sys
import uuid

from pyclient import AuthenticatedClient, Client
from pyclient.api.ag_leader import create_ag_leader_credentials, get_ag_leader_credentials
from pyclient.api.authentication import authenticate
from pyclient.api.john_deere import (
    create_john_deere_credentials,
    delete_john_deere_credentials,
    get_john_deere_credentials,
    get_john_deere_credentials_events,
    get_john_deere_credentials_status,
)
from pyclient.api.raven import create_raven_credentials, get_raven_credentials
from pyclient.api.users import create_user, delete_user, get_user, list_users, update_user
from pyclient.models import (
    AgLeaderCredentials,
    AgLeaderCredentialsRequest,
    ClientEnvironment,
    CreateLeafUser,
    CredentialStatus,
    IdToken,
    JohnDeereCredentials,
    JohnDeereCredentialsRequest,
    LeafUser,
    LoginRequest,
    Problem,
    RavenCredentials,
    RavenCredentialsRequest,
    UpdateLeafUser,
)

base, username, password = sys.argv[1:4]
step = 0


def check(condition, what):
    global step
    step += 1
    if not condition:
        raise SystemExit(f"python client: step {step} failed: {what}")


def problem(response, status):
    check(response.status_code == status, f"expected {status}, got {response.status_code}: {response.content!r}")
    check(isinstance(response.parsed, Problem), f"a {status} parses as Problem")
    check(response.parsed.status == status, "problem.status")
    check(response.headers["content-type"] == "application/problem+json", "problem+json")
    return response.parsed


anonymous = Client(base_url=base)
bad = authenticate.sync_detailed(client=anonymous, body=LoginRequest(username=username, password="wrong"))
problem(bad, 401)
login = authenticate.sync_detailed(client=anonymous, body=LoginRequest(username=username, password=password))
check(isinstance(login.parsed, IdToken), "login returns IdToken")
client = AuthenticatedClient(base_url=base, token=login.parsed.id_token)

created = create_user.sync_detailed(client=client, body=CreateLeafUser(name="Py Grower", email="py@example.com"))
check(created.status_code == 201 and isinstance(created.parsed, LeafUser), "user created")
user = created.parsed.id

jd = create_john_deere_credentials.sync_detailed(
    user,
    client=client,
    body=JohnDeereCredentialsRequest(
        client_key="py-key", client_secret="py-secret", refresh_token="py-refresh",
        client_environment=ClientEnvironment.PRODUCTION,
    ),
)
check(jd.status_code == 201 and isinstance(jd.parsed, JohnDeereCredentials), "John Deere created")
check(jd.parsed.status == CredentialStatus.OK, "a new credential is OK")
ag = create_ag_leader_credentials.sync_detailed(
    user, client=client,
    body=AgLeaderCredentialsRequest(refresh_token="r", public_key="pub", private_key="priv"),
)
check(ag.status_code == 201 and isinstance(ag.parsed, AgLeaderCredentials), "AgLeader created")
raven = create_raven_credentials.sync_detailed(
    user, client=client, body=RavenCredentialsRequest(client_id="id", client_secret="s", refresh_token="r"),
)
check(raven.status_code == 201 and isinstance(raven.parsed, RavenCredentials), "Raven created")

read = get_john_deere_credentials.sync(user, client=client)
check(read.id == jd.parsed.id and read.client_key == "py-key", "John Deere read back")
check(get_ag_leader_credentials.sync(user, client=client).public_key == "pub", "AgLeader read back")
check(get_raven_credentials.sync(user, client=client).client_id == "id", "Raven read back")
whole = get_user.sync(user, client=client)
check(whole.john_deere_credentials.id == jd.parsed.id and whole.raven_credentials is not None, "user holds them")
status = get_john_deere_credentials_status.sync(user, client=client)
check(status.status == CredentialStatus.OK, "status OK")
check(get_john_deere_credentials_events.sync(user, client=client) == [], "no events yet")

replaced = create_john_deere_credentials.sync_detailed(
    user, client=client,
    body=JohnDeereCredentialsRequest(
        client_key="py-key-2", client_secret="s", refresh_token="r", client_environment=ClientEnvironment.STAGE,
    ),
)
check(replaced.status_code == 201 and replaced.parsed.id != jd.parsed.id, "a POST replaces")
only = create_john_deere_credentials.sync_detailed(
    user, client=client, if_none_match="*",
    body=JohnDeereCredentialsRequest(
        client_key="k", client_secret="s", refresh_token="r", client_environment=ClientEnvironment.STAGE,
    ),
)
problem(only, 412)

page = list_users.sync_detailed(client=client, page=0, size=1, email="py@example.com")
check(page.status_code == 200 and len(page.parsed) == 1, "list filtered")
check(page.headers["x-total-count"] == "1", "X-Total-Count")
problem(list_users.sync_detailed(client=client, size=500), 400)
updated = update_user.sync(client=client, body=UpdateLeafUser(id=user, name="Renamed"))
check(updated.name == "Renamed", "user updated")

check(delete_john_deere_credentials.sync_detailed(user, client=client).status_code == 204, "deleted")
gone = problem(get_john_deere_credentials.sync_detailed(user, client=client), 404)
check("John Deere" in gone.detail, "404 says what is missing")
problem(delete_john_deere_credentials.sync_detailed(user, client=client), 404)

invalid = create_raven_credentials.sync_detailed(
    user, client=client, body=RavenCredentialsRequest(client_id="id", client_secret=" ", refresh_token="r"),
)
p = problem(invalid, 400)
check([(e.field, e.message) for e in p.field_errors] == [("clientSecret", "NotBlank")], "fieldErrors")
problem(get_user.sync_detailed(uuid.uuid4(), client=client), 404)
stranger = AuthenticatedClient(base_url=base, token="not-a-token")
problem(get_user.sync_detailed(user, client=stranger), 401)

check(delete_user.sync_detailed(user, client=client).status_code == 204, "user deleted")
problem(get_raven_credentials.sync_detailed(user, client=client), 404)
print(f"python client scenario: {step} checks passed")
