// The GraphQL client of the dashboard: every figure on the page comes through /graphql.
const TOKEN_KEY = "huizhen.token";

export class GraphQLError extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join("; "));
    this.errors = errors;
    this.code = errors[0]?.extensions?.code;
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
  },
};

export async function gql(query, variables = {}) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${session.token}` },
    body: JSON.stringify({ query, variables }),
  });
  let body;
  try {
    body = await response.json();
  } catch {
    throw new GraphQLError([{ message: `HTTP ${response.status}`, extensions: { code: "HTTP" } }]);
  }
  if (body.errors?.length) throw new GraphQLError(body.errors);
  return body.data;
}

export function showError(where, err) {
  where.textContent = err instanceof GraphQLError ? `${err.code ?? "ERROR"}: ${err.message}` : String(err);
  where.classList.add("error");
}

// The login form, the logout button and a token kept from earlier in this tab: one wiring for every page.
export function wireLogin(login) {
  const $ = (selector) => document.querySelector(selector);
  const attempt = async () => {
    try {
      await login();
    } catch (err) {
      session.token = null;
      showError($("#login-error"), err);
    }
  };
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    session.token = $("#token").value.trim();
    attempt();
  });
  $("#logout").addEventListener("click", () => {
    session.token = null;
    location.reload();
  });
  if (session.token) attempt();
}
