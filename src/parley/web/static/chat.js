/*
 * The Web URL page (/chat?token=…): the Web SDK on a page of its own. Parley writes the
 * public Client Key of the app served on this host into the page; the user's token is
 * read from the address here and never written into the page by the server.
 */
(function () {
  'use strict';

  const meta = document.querySelector('meta[name="parley-client-key"]');
  const token = new URLSearchParams(location.search).get('token') || undefined;
  window.parleyChat = window.IMKitUI.init({
    domain: location.origin,
    clientKey: meta ? meta.content : undefined,
    token,
  });
})();
