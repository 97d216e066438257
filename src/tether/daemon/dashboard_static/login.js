// The dashboard's login (docs/dashboard.md). The token never goes into a URL the server sees: it
// is typed here, or read from the page's #token= fragment (which browsers never send), and POSTed
// to the login route, which answers with an HttpOnly session cookie. The fragment is removed from
// the address bar and the history before anything else happens.
(function () {
  "use strict";
  const LOGIN = "/_tether/dashboard/login";
  const HOME = "/_tether/dashboard/";
  const onLoginPage = location.pathname === LOGIN;

  function fragmentToken() {
    const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }

  async function login(token) {
    const resp = await fetch(LOGIN, {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: {"content-type": "application/json"}, body: JSON.stringify({token: token}),
    });
    if (resp.status === 204) return null;
    try { return (await resp.json()).message; } catch (e) { return "login failed (" + resp.status + ")"; }
  }

  function showError(message) {
    const el = document.getElementById("error");
    if (el) { el.textContent = message; el.hidden = false; }
  }

  const token = fragmentToken();
  if (token !== null) history.replaceState(null, "", location.pathname + location.search);
  // app.js waits for this before its first request: true when the fragment logged in
  window.tetherLogin = token === null ? Promise.resolve(false) : login(token).then(function (problem) {
    if (problem === null && onLoginPage) location.replace(HOME);
    if (problem !== null) {
      if (!onLoginPage) { location.replace(LOGIN); return false; }
      showError(problem);
    }
    return problem === null;
  });

  if (onLoginPage) {
    document.addEventListener("DOMContentLoaded", function () {
      const form = document.getElementById("login");
      form.addEventListener("submit", async function (event) {
        event.preventDefault();
        const problem = await login(document.getElementById("token").value);
        if (problem === null) location.replace(HOME); else showError(problem);
      });
    });
  }
})();
