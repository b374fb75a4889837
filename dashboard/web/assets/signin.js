// After signing in, come back to the page that asked for it.
const next = document.getElementById("next");
if (location.pathname.startsWith("/dashboard/") && location.pathname !== "/dashboard/signin") {
  next.value = location.pathname + location.search;
}
document.getElementById("token").focus();
