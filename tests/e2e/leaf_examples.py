"""Replays the request examples of Leaf's documentation pages (../shared/seeds/) against this
server, changing only the host (plus the placeholders YOUR_TOKEN and {leafUserId}).

Each example is copied verbatim from the seeds. curl runs through bash, the Python examples run
with `requests`, the JavaScript examples with `axios` under node. A small wrapper around each
records the HTTP status and body; the checks are that paths, headers and bodies are accepted as
Leaf documents them and that the answers have the documented shapes and status codes.

Usage: leaf_examples.py BASE_URL USERNAME PASSWORD   (axios resolvable through NODE_PATH)
"""

import json
import os
import subprocess
import sys
import tempfile

import requests

BASE, USERNAME, PASSWORD = sys.argv[1:4]
LEAF = "https://api.withleaf.io"
ROUTE = "/services/usermanagement/api/users/{leafUserId}"

# ---- The examples, verbatim from the seeds -------------------------------------------------

AG_GET = {
    "curl": """
  curl -X GET \\
      -H 'Authorization: Bearer YOUR_TOKEN' \\
      'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials'
""",
    "js": """
  const axios = require('axios')
  const TOKEN = 'YOUR_TOKEN'

  const endpoint = 'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials'
  const headers = { 'Authorization': `Bearer ${TOKEN}` }

  axios.get(endpoint, { headers })
      .then(res => console.log(res.data))
      .catch(console.error)
""",
    "py": """
import requests

TOKEN = 'YOUR_TOKEN'

endpoint = 'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials'
headers = {'Authorization': f'Bearer {TOKEN}'}

response = requests.get(endpoint, headers=headers)
print(response.json())
""",
}

AG_POST = {
    "js": """
  const axios = require('axios')
  const TOKEN = 'YOUR_TOKEN'

  const endpoint = 'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials'
  const headers = { 'Authorization': `Bearer ${TOKEN}` }

  const data = {
    "accessToken": "str", 
    "refreshToken": "str", 
    "publicKey": "str", 
    "privateKey": "str"
  }

  axios.post(endpoint, data, { headers })
      .then(res => console.log(res.data))
      .catch(console.error)
""",
    "py": """
import requests

TOKEN = 'YOUR_TOKEN'

endpoint = 'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials'
headers = {'Authorization': f'Bearer {TOKEN}'}

data = {
  "accessToken": "str", 
  "refreshToken": "str", 
  "publicKey": "str", 
  "privateKey": "str"
}

response = requests.post(endpoint, headers=headers, json=data)
print(response.json())
""",
    "curl": """
curl -X POST \\
-H 'Authorization: Bearer YOUR_TOKEN' \\
-H 'Content-Type: application/json' \\
-d '{ "accessToken": "str","refreshToken": "str","publicKey":"str", "privateKey":"str"}' \\
'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials'
""",
    # The newer AgLeader guide (001/004).
    "curl (guide)": """
  curl -X POST \\
      -H 'Authorization: Bearer YOUR_TOKEN' \\
      -H 'Content-Type: application/json' \\
      -d '{
        "refreshToken": "grower-refresh-token",
        "publicKey": "your-public-key",
        "privateKey": "your-private-key"
      }' \\
      'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials'
""",
    "py (guide)": """
import requests

TOKEN = 'YOUR_TOKEN'

endpoint = 'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials'
headers = {'Authorization': f'Bearer {TOKEN}'}

data = {
    "refreshToken": "grower-refresh-token",
    "publicKey": "your-public-key",
    "privateKey": "your-private-key"
}

response = requests.post(endpoint, headers=headers, json=data)
print(response.json())
""",
    "js (guide)": """
  const axios = require('axios')
  const TOKEN = 'YOUR_TOKEN'

  const endpoint = 'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials'
  const headers = { 'Authorization': `Bearer ${TOKEN}` }

  const data = {
      "refreshToken": "grower-refresh-token",
      "publicKey": "your-public-key",
      "privateKey": "your-private-key"
  }

  axios.post(endpoint, data, { headers })
      .then(res => console.log(res.data))
      .catch(console.error)
""",
}

AG_DELETE = {
    "curl": """
  curl -X DELETE \\
      -H 'Authorization: Bearer YOUR_TOKEN' \\
      'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials'
""",
    "js": """
  const axios = require('axios')
  const TOKEN = 'YOUR_TOKEN'

  const endpoint = 'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials'
  const headers = { 'Authorization': `Bearer ${TOKEN}` }

  axios.delete(endpoint, { headers })
      .then(res => console.log(res.data))
      .catch(console.error)
""",
    "py": """
import requests

TOKEN = 'YOUR_TOKEN'

endpoint = 'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials'
headers = {'Authorization': f'Bearer {TOKEN}'}

response = requests.delete(endpoint, headers=headers)
print(response.json())
""",
}

AG_EVENTS = {
    "js": """
  const axios = require('axios')
  const TOKEN = 'YOUR_TOKEN'

  const endpoint = 'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials/events'
  const headers = { 'Authorization': `Bearer ${TOKEN}` }

  axios.get(endpoint, { headers })
      .then(res => console.log(res.data))
      .catch(console.error)
""",
    "py": """
import requests

TOKEN = 'YOUR_TOKEN'

endpoint = 'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials/events'
headers = {'Authorization': f'Bearer {TOKEN}'}

response = requests.get(endpoint, headers=headers)
print(response.json())
""",
    # 000's curl splits the URL over two lines (a typo no shell would send); the guide's is whole.
    "curl (guide)": """
  curl -X GET \\
      -H 'Authorization: Bearer YOUR_TOKEN' \\
      'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials/events'
""",
}


def jd(verb, suffix=""):
    """John Deere's page (002) uses the same three snippets per endpoint as AgLeader's."""
    url = f"https://api.withleaf.io/services/usermanagement/api/users/{{leafUserId}}/john-deere-credentials{suffix}"
    return {
        "js": f"""
  const axios = require('axios')
  const TOKEN = 'YOUR_TOKEN'

  const endpoint = '{url}'
  const headers = {{ 'Authorization': `Bearer ${{TOKEN}}` }}

  axios.{verb}(endpoint, {{ headers }})
      .then(res => console.log(res.data))
      .catch(console.error)
""",
        "py": f"""
import requests

TOKEN = 'YOUR_TOKEN'

endpoint = '{url}'
headers = {{'Authorization': f'Bearer {{TOKEN}}'}}

response = requests.{verb}(endpoint, headers=headers)
print(response.json())
""",
        "curl": f"""
  curl -X {verb.upper()} \\
      -H 'Authorization: Bearer YOUR_TOKEN' \\
      '{url}'
""",
    }


JD_POST = {
    "js": """
  const axios = require('axios')
  const TOKEN = 'YOUR_TOKEN'

  const endpoint = 'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/john-deere-credentials'
  const headers = { 'Authorization': `Bearer ${TOKEN}` }

  const data = {
    "clientKey": "str",
    "clientSecret": "str",
    "accessToken": "str",
    "refreshToken": "str",
    "clientEnvironment": "STAGE or PRODUCTION"
  }

  axios.post(endpoint, data, { headers })
      .then(res => console.log(res.data))
      .catch(console.error)
""",
    "py": """
import requests

TOKEN = 'YOUR_TOKEN'

endpoint = 'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/john-deere-credentials'
headers = {'Authorization': f'Bearer {TOKEN}'}

data = {
  "clientKey": "str",
  "clientSecret": "str",
  "accessToken": "str",
  "refreshToken": "str",
  "clientEnvironment": "STAGE or PRODUCTION"
}

response = requests.post(endpoint, headers=headers, json=data)
print(response.json())
""",
    "curl": """
  curl -X POST \\
      -H 'Authorization: Bearer YOUR_TOKEN' \\
      -d '{"clientKey": "str","clientSecret": "str","accessToken": "str","refreshToken": "str","clientEnvironment": "STAGE or PRODUCTION"}' \\
      'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/john-deere-credentials'
""",
}

RAVEN = {
    "get": """
curl -X GET \\
-H 'Authorization: Bearer YOUR_TOKEN' \\
'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/raven-credentials'
""",
    "post": """
curl -X POST \\
-H 'Authorization: Bearer YOUR_TOKEN' \\
-H 'Content-Type: application/json' \\
-d '{ "clientId": "str","clientSecret": "str","refreshToken":"str"}' \\
'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/raven-credentials'
""",
    "delete": """
curl -X DELETE \\
-H 'Authorization: Bearer YOUR_TOKEN' \\
'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/raven-credentials'
""",
    # 003 splits the events URL over two lines too; this is the same request on one line.
    "events": """
curl -X GET \\
-H 'Authorization: Bearer YOUR_TOKEN' \\
'https://api.withleaf.io/services/usermanagement/api/users/{leafUserId}/raven-credentials/events'
""",
}

# ---- Running them --------------------------------------------------------------------------

AXIOS_RECORDER = """
const axios = require('axios');
const record = (status, data) => process.stdout.write('LEAFREPLAY ' + JSON.stringify({status, data}) + '\\n');
axios.interceptors.response.use(
  r => { record(r.status, r.data); return r; },
  e => { if (e.response) record(e.response.status, e.response.data); return Promise.reject(e); });
"""


def fill(code, token, user):
    return code.replace(LEAF, BASE).replace("YOUR_TOKEN", token).replace("{leafUserId}", user)


def run(lang, code, token, user):
    """Runs one example; returns (status, parsed body or None)."""
    code = fill(code, token, user)
    if lang.startswith("curl"):
        script = 'curl() { command curl --noproxy "*" -s -w "\\nLEAFREPLAY %{http_code}" "$@"; }\n' + code
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
        body, status = out.rsplit("\nLEAFREPLAY ", 1)
        return int(status), json.loads(body) if body.strip() else None
    if lang.startswith("py"):
        namespace = {}
        try:
            exec(compile(code, f"<{lang}>", "exec"), {"print": lambda *a: None, **namespace}, namespace)
        except requests.exceptions.JSONDecodeError:
            # `print(response.json())` after a DELETE: the 204 has no body (on Leaf too).
            pass
        response = namespace["response"]
        return response.status_code, response.json() if response.content else None
    with tempfile.TemporaryDirectory() as tmp:
        recorder = os.path.join(tmp, "record.cjs")
        example = os.path.join(tmp, "example.cjs")
        open(recorder, "w").write(AXIOS_RECORDER)
        open(example, "w").write(code)
        out = subprocess.run(["node", "-r", recorder, example], capture_output=True, text=True).stdout
        line = next(l for l in out.splitlines() if l.startswith("LEAFREPLAY "))
        recorded = json.loads(line[len("LEAFREPLAY "):])
        return recorded["status"], recorded["data"] if recorded["data"] != "" else None


checks = 0


def expect(label, result, status, keys=None, kind=dict):
    global checks
    got_status, body = result
    if got_status != status:
        raise SystemExit(f"{label}: expected {status}, got {got_status}: {body}")
    if keys is not None:
        if not isinstance(body, kind):
            raise SystemExit(f"{label}: expected a JSON {kind.__name__}, got {body!r}")
        missing = set(keys) - set(body if kind is dict else (body[0] if body else keys))
        if missing:
            raise SystemExit(f"{label}: answer lacks {sorted(missing)}: {body}")
    checks += 1


token = requests.post(f"{BASE}/api/authenticate", json={"username": USERNAME, "password": PASSWORD}).json()["id_token"]
user = requests.post(
    f"{BASE}/services/usermanagement/api/users",
    headers={"Authorization": f"Bearer {token}"},
    json={"name": "Leaf docs replay"},
).json()["id"]
ex = lambda lang, code: run(lang, code, token, user)  # noqa: E731

COMMON = ["id", "status", "createdTime"]
AG_KEYS = COMMON + ["accessToken", "refreshToken", "publicKey", "privateKey"]
JD_KEYS = COMMON + ["clientKey", "clientSecret", "tokenId", "tokenSecretKey", "accessToken", "refreshToken",
                    "clientEnvironment", "scopes"]
RAVEN_KEYS = COMMON + ["tokenMetadata", "clientId", "clientSecret", "refreshToken", "accessToken"]
EVENT_KEYS = ["body", "createdDate", "headers", "id", "statusCode"]

# AgLeader: create (each language; a POST replaces), read, events, delete.
for lang, code in AG_POST.items():
    expect(f"AgLeader POST {lang}", ex(lang, code), 201, AG_KEYS)
for lang, code in AG_GET.items():
    expect(f"AgLeader GET {lang}", ex(lang, code), 200, AG_KEYS)
for lang, code in AG_EVENTS.items():
    expect(f"AgLeader events {lang}", ex(lang, code), 200, EVENT_KEYS, kind=list)
for lang, code in AG_DELETE.items():
    expect(f"AgLeader DELETE {lang}", ex(lang, code), 204)
    expect(f"AgLeader GET after DELETE {lang}", ex("curl", AG_GET["curl"]), 404, ["status", "title", "detail"])
    ex("curl", AG_POST["curl"])

# John Deere: the examples post the placeholder "STAGE or PRODUCTION", which is not a value:
# replayed verbatim they get 400 naming clientEnvironment; with the placeholder filled, 201.
for lang, code in JD_POST.items():
    status, body = ex(lang, code)
    expect(f"John Deere POST {lang} (placeholder)", (status, body), 400, ["fieldErrors"])
    assert [e["field"] for e in body["fieldErrors"]] == ["clientEnvironment"], body
    expect(f"John Deere POST {lang}", ex(lang, code.replace("STAGE or PRODUCTION", "PRODUCTION")), 201, JD_KEYS)
for lang, code in jd("get").items():
    expect(f"John Deere GET {lang}", ex(lang, code), 200, JD_KEYS)
for lang, code in jd("get", "/status").items():
    status, body = ex(lang, code)
    expect(f"John Deere status {lang}", (status, body), 200, ["status"])
    assert body["status"] in ("OK", "UNAUTHENTICATED", "MISSING_PERMISSION", "TEMPORARILY_UNAVAILABLE"), body
for lang, code in jd("get", "/events").items():
    expect(f"John Deere events {lang}", ex(lang, code), 200, EVENT_KEYS, kind=list)
fill_jd = JD_POST["curl"].replace("STAGE or PRODUCTION", "STAGE")
for lang, code in jd("delete").items():
    expect(f"John Deere DELETE {lang}", ex(lang, code), 204)
    expect(f"John Deere GET after DELETE {lang}", ex("curl", jd("get")["curl"]), 404, ["status"])
    ex("curl", fill_jd)

# Raven (003 has curl examples only).
expect("Raven POST curl", ex("curl", RAVEN["post"]), 201, RAVEN_KEYS)
expect("Raven GET curl", ex("curl", RAVEN["get"]), 200, RAVEN_KEYS)
expect("Raven events curl", ex("curl", RAVEN["events"]), 200, EVENT_KEYS, kind=list)
expect("Raven DELETE curl", ex("curl", RAVEN["delete"]), 204)
expect("Raven GET after DELETE curl", ex("curl", RAVEN["get"]), 404, ["status"])

print(f"Leaf documentation examples: {checks} replayed and checked")
