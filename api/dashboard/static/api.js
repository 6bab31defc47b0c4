// The dashboard's only way to the server: /api/v1 with the user's token as a bearer credential.
// The token lives in sessionStorage (gone when the tab closes), never in a URL or a cookie.

const TOKEN_KEY = "commonpool.token";
export const API = "/api/v1";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** A refused call: the problem+json the server sent (status, code, title, detail). */
export class ApiError extends Error {
  constructor(status, problem) {
    const title = problem.title || `HTTP ${status}`;
    super(problem.detail ? `${title}: ${problem.detail}` : title);
    this.status = status;
    this.code = problem.code || null;
    this.problem = problem;
  }
}

/** The server could not be reached at all. */
export class Offline extends Error {}

/**
 * Call an /api/v1 route; resolves to the parsed JSON, rejects with ApiError or Offline.
 * `query` values that are arrays repeat the key (`state=A&state=B`), empty ones are left out.
 */
export async function api(path, { method = "GET", body, query, token } = {}) {
  const url = new URL(API + path, window.location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v !== undefined && v !== null && v !== "") url.searchParams.append(key, v);
    }
  }
  const headers = { Accept: "application/json" };
  const secret = token || getToken();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    throw new Offline(`cannot reach the server (${err.message})`);
  }
  if (!response.ok) {
    let problem = {};
    try {
      problem = await response.json();
    } catch {
      problem = { title: response.statusText };
    }
    throw new ApiError(response.status, problem);
  }
  return response.status === 204 ? null : response.json();
}
