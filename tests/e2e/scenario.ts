// One scenario through a typed client generated from openapi/openapi.json (openapi-typescript
// types + openapi-fetch). Usage: tsx scenario.ts BASE_URL USERNAME PASSWORD
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

declare const process: { argv: string[]; exit(code: number): never };

type Problem = components["schemas"]["Problem"];
type JohnDeereCredentialsRequest = components["schemas"]["JohnDeereCredentialsRequest"];

const [base, username, password] = process.argv.slice(2);
let step = 0;
function check(condition: boolean, what: string): void {
  step += 1;
  if (!condition) {
    console.error(`typescript client: step ${step} failed: ${what}`);
    process.exit(1);
  }
}
function problem(error: unknown, response: Response, status: number): Problem {
  check(response.status === status, `expected ${status}, got ${response.status}`);
  check(response.headers.get("content-type") === "application/problem+json", "problem+json");
  const body = error as Problem;
  check(body.status === status && body.message.length > 0, "a Problem body");
  return body;
}

const client = createClient<paths>({ baseUrl: base });
const USER = "/services/usermanagement/api/users/{id}" as const;
const JD = "/services/usermanagement/api/users/{leafUserId}/john-deere-credentials" as const;

const wrong = await client.POST("/api/authenticate", { body: { username, password: "wrong" } });
problem(wrong.error, wrong.response, 401);
const login = await client.POST("/api/authenticate", { body: { username, password, rememberMe: true } });
check(login.response.status === 200 && !!login.data?.id_token, "logged in");
const token = login.data!.id_token;
const auth: Middleware = {
  onRequest({ request }) {
    request.headers.set("Authorization", `Bearer ${token}`);
    return request;
  },
};
client.use(auth);

const created = await client.POST("/services/usermanagement/api/users", {
  body: { name: "TS Grower", externalId: "ts-1" },
});
check(created.response.status === 201 && !!created.data, "user created");
const user = created.data!.id;
const path = { leafUserId: user };

const jdBody: JohnDeereCredentialsRequest = {
  clientKey: "ts-key", clientSecret: "ts-secret", refreshToken: "ts-refresh", clientEnvironment: "STAGE",
};
const jd = await client.POST(JD, { params: { path }, body: jdBody });
check(jd.response.status === 201 && jd.data?.status === "OK", "John Deere created");
const ag = await client.POST("/services/usermanagement/api/users/{leafUserId}/ag-leader-credentials", {
  params: { path }, body: { refreshToken: "r", publicKey: "pub", privateKey: "priv" },
});
check(ag.response.status === 201 && ag.data?.publicKey === "pub", "AgLeader created");
const raven = await client.POST("/services/usermanagement/api/users/{leafUserId}/raven-credentials", {
  params: { path }, body: { clientId: "id", clientSecret: "s", refreshToken: "r" },
});
check(raven.response.status === 201 && raven.data?.clientId === "id", "Raven created");

const read = await client.GET(JD, { params: { path } });
check(read.data?.id === jd.data!.id && read.data?.clientKey === "ts-key", "John Deere read back");
const whole = await client.GET(USER, { params: { path: { id: user } } });
check(whole.data?.ravenCredentials?.clientId === "id", "the user holds Raven");
check(whole.data?.agLeaderCredentials?.privateKey === "priv", "the user holds AgLeader");
const status = await client.GET(`${JD}/status`, { params: { path } });
check(status.data?.status === "OK", "status OK");
const events = await client.GET(`${JD}/events`, { params: { path } });
check(Array.isArray(events.data) && events.data.length === 0, "no events yet");

const replaced = await client.POST(JD, { params: { path }, body: { ...jdBody, clientKey: "ts-key-2" } });
check(replaced.response.status === 201 && replaced.data?.id !== jd.data!.id, "a POST replaces");
const createOnly = await client.POST(JD, { params: { path, header: { "If-None-Match": "*" } }, body: jdBody });
problem(createOnly.error, createOnly.response, 412);

const page = await client.GET("/services/usermanagement/api/users", { params: { query: { externalId: "ts-1" } } });
check(page.data?.length === 1 && page.response.headers.get("x-total-count") === "1", "list filtered");
const badPage = await client.GET("/services/usermanagement/api/users", { params: { query: { size: 0 } } });
problem(badPage.error, badPage.response, 400);

const deleted = await client.DELETE(JD, { params: { path } });
check(deleted.response.status === 204, "John Deere deleted");
const gone = await client.GET(JD, { params: { path } });
problem(gone.error, gone.response, 404);

const invalid = await client.POST(JD, {
  params: { path },
  body: { ...jdBody, clientEnvironment: "DEV" as JohnDeereCredentialsRequest["clientEnvironment"] },
});
const p = problem(invalid.error, invalid.response, 400);
check(p.fieldErrors?.[0]?.field === "clientEnvironment" && p.fieldErrors?.[0]?.message === "Pattern", "fieldErrors");
const unknownUser = await client.GET(USER, { params: { path: { id: "00000000-0000-4000-8000-000000000000" } } });
problem(unknownUser.error, unknownUser.response, 404);

const removed = await client.DELETE(USER, { params: { path: { id: user } } });
check(removed.response.status === 204, "user deleted");
const after = await client.GET("/services/usermanagement/api/users/{leafUserId}/raven-credentials", { params: { path } });
problem(after.error, after.response, 404);
console.log(`typescript client scenario: ${step} checks passed`);
