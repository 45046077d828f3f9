/* Resumable uploads from the upload page, with the API's protocol (docs/storage.md):
   open with the file's size and SHA-256, PUT the parts (straight to storage when
   the server says so), complete. A part that fails (a network blip, a server
   restarting) is tried again with a growing wait; the upload's id is kept in
   localStorage, so choosing the same file after a reload sends only what is missing. */
(function () {
  "use strict";

  var THRESHOLD = 64 * 1024 * 1024; // smaller files go in one request, as before
  var PARALLEL = 3;
  var ATTEMPTS = 8; // waits of 1, 2, 4 ... 30 s between them: about two minutes in all
  var HASH_SLICE = 4 * 1024 * 1024;

  function wait(attempt) {
    var ms = Math.min(1000 * Math.pow(2, attempt - 1), 30000);
    return new Promise(function (resolve) { window.setTimeout(resolve, ms); });
  }

  /* A refusal the server meant (4xx) is final; anything else is worth another try. */
  function retried(attempt, task) {
    return task().catch(function (error) {
      if (error.final || attempt >= ATTEMPTS) throw error;
      return wait(attempt).then(function () { return retried(attempt + 1, task); });
    });
  }

  function call(form, method, url, body) {
    var headers = { Accept: "application/json", "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value };
    if (body) headers["Content-Type"] = "application/json";
    return fetch(url, { method: method, headers: headers, credentials: "same-origin", body: body && JSON.stringify(body) })
      .catch(function () { throw { message: "The connection was lost." }; })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (answer) {
          if (response.ok) return answer;
          throw { final: response.status < 500, status: response.status, code: answer.code,
                  message: answer.detail || "HTTP " + response.status };
        });
      });
  }

  function putPart(url, blob, toStorage, onSent) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      if (!toStorage) {
        xhr.withCredentials = true;
        xhr.setRequestHeader("X-CSRFToken", document.querySelector("[name=csrfmiddlewaretoken]").value);
      }
      xhr.upload.addEventListener("progress", function (e) { onSent(e.loaded); });
      xhr.addEventListener("load", function () {
        if (xhr.status >= 200 && xhr.status < 300) resolve();
        // 403 from storage: the link expired; new links come with the next listing.
        else reject({ final: xhr.status < 500 && xhr.status !== 403 && xhr.status !== 408 && xhr.status !== 429,
                      stale: xhr.status === 403, message: "A part was refused (HTTP " + xhr.status + ")." });
      });
      xhr.addEventListener("error", function () { reject({ message: "The connection was lost." }); });
      xhr.send(blob);
    });
  }

  /* --- SHA-256 of a file, a slice at a time (crypto.subtle only digests whole buffers) --- */
  var K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);

  function Sha256() {
    this.h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                              0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    this.w = new Uint32Array(64);
    this.tail = new Uint8Array(0);
    this.length = 0;
  }
  Sha256.prototype.blocks = function (bytes, end) {
    var h = this.h, w = this.w, a, b, c, d, e, f, g, k, i, j, s0, s1, t1, t2;
    for (j = 0; j < end; j += 64) {
      for (i = 0; i < 16; i++) {
        w[i] = (bytes[j + 4 * i] << 24) | (bytes[j + 4 * i + 1] << 16) | (bytes[j + 4 * i + 2] << 8) | bytes[j + 4 * i + 3];
      }
      for (i = 16; i < 64; i++) {
        s0 = ((w[i - 15] >>> 7) | (w[i - 15] << 25)) ^ ((w[i - 15] >>> 18) | (w[i - 15] << 14)) ^ (w[i - 15] >>> 3);
        s1 = ((w[i - 2] >>> 17) | (w[i - 2] << 15)) ^ ((w[i - 2] >>> 19) | (w[i - 2] << 13)) ^ (w[i - 2] >>> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
      }
      a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; k = h[7];
      for (i = 0; i < 64; i++) {
        s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        t1 = (k + s1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
        s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
    }
  };
  Sha256.prototype.update = function (chunk) {
    var bytes = new Uint8Array(this.tail.length + chunk.length);
    bytes.set(this.tail); bytes.set(chunk, this.tail.length);
    var whole = bytes.length - (bytes.length % 64);
    this.blocks(bytes, whole);
    this.tail = bytes.slice(whole);
    this.length += chunk.length;
  };
  Sha256.prototype.hex = function () {
    var pad = new Uint8Array(((this.length + 8) >> 6) * 64 + 64 - this.length);
    var bits = this.length * 8;
    pad[0] = 0x80;
    for (var i = 0; i < 8; i++) pad[pad.length - 1 - i] = Math.floor(bits / Math.pow(2, 8 * i)) & 0xff;
    this.update(pad);
    return Array.prototype.map.call(this.h, function (x) { return ("0000000" + x.toString(16)).slice(-8); }).join("");
  };

  function sha256(file, onProgress) {
    var digest = new Sha256();
    function from(offset) {
      if (offset >= file.size) return Promise.resolve(digest.hex());
      return file.slice(offset, offset + HASH_SLICE).arrayBuffer().then(function (buffer) {
        digest.update(new Uint8Array(buffer));
        onProgress(offset + buffer.byteLength);
        return from(offset + buffer.byteLength);
      });
    }
    return from(0);
  }

  /* --- the protocol ------------------------------------------------------------------ */
  function opened(form, file, report) {
    var remembered = "lubdub-upload:" + [file.name, file.size, file.lastModified].join(":");
    var saved = window.localStorage.getItem(remembered);
    var again = saved
      ? retried(1, function () { return call(form, "GET", form.dataset.uploadsUrl + saved + "/"); })
          .catch(function () { return null; })
      : Promise.resolve(null);
    return again.then(function (upload) {
      if (upload && (upload.status === "open" || upload.status === "completing")) return [remembered, upload];
      return sha256(file, function (done) { report(done / file.size, "Checking the file… "); }).then(function (hex) {
        var fields = { filename: file.name, size: file.size, sha256: hex, name: form.elements.name.value,
                       model: form.elements.model.value, organisation: form.dataset.organisation };
        if (form.elements.site && form.elements.site.value) fields.site = form.elements.site.value;
        if (form.elements.webhook_url && form.elements.webhook_url.value) fields.webhook_url = form.elements.webhook_url.value;
        return retried(1, function () { return call(form, "POST", form.dataset.uploadsUrl, fields); });
      }).then(function (upload) {
        window.localStorage.setItem(remembered, upload.id);
        return [remembered, upload];
      });
    });
  }

  function sendParts(form, file, upload, report) {
    var queue = upload.missing.slice();
    var links = upload.part_urls;
    var inFlight = {};
    var held = file.size - queue.reduce(function (sum, n) { return sum + length(upload, n, file); }, 0);
    function show() {
      var moving = Object.keys(inFlight).reduce(function (sum, n) { return sum + inFlight[n]; }, 0);
      report((held + moving) / file.size, "Uploading… ");
    }
    function one(number) {
      var start = (number - 1) * upload.part_size;
      var blob = file.slice(start, start + length(upload, number, file));
      return retried(1, function () {
        inFlight[number] = 0;
        return putPart(links[number], blob, upload.transport === "storage", function (sent) {
          inFlight[number] = sent; show();
        }).catch(function (error) {
          delete inFlight[number]; show();
          if (!error.stale) throw error;
          return call(form, "GET", upload.urls.self).then(function (fresh) { links = fresh.part_urls; throw error; });
        });
      }).then(function () { delete inFlight[number]; held += blob.size; show(); });
    }
    function worker() {
      var number = queue.shift();
      return number === undefined ? Promise.resolve() : one(number).then(worker);
    }
    var workers = [];
    for (var i = 0; i < PARALLEL; i++) workers.push(worker());
    return Promise.all(workers);
  }

  function length(upload, number, file) {
    return Math.min(upload.part_size, file.size - (number - 1) * upload.part_size);
  }

  function completed(form, file, remembered, upload, report) {
    return sendParts(form, file, upload, report).then(function () {
      report(1, "Checking the upload and creating the batch… ");
      return retried(1, function () { return call(form, "POST", upload.urls.complete); });
    }).then(function (batch) {
      window.localStorage.removeItem(remembered);
      return "/batches/" + batch.id + "/";
    }, function (error) {
      if (error.code !== "checksum_mismatch" && error.code !== "size_mismatch") throw error;
      // The parts are not the file (it changed while it was read): the next try starts afresh.
      window.localStorage.removeItem(remembered);
      return call(form, "DELETE", upload.urls.self).catch(function () { return null; }).then(function () {
        throw { message: "The file did not arrive as it was read (did it change?). Upload it again." };
      });
    });
  }

  /* report(share 0..1, text); resolves with the batch page's path. */
  function upload(form, file, report) {
    return opened(form, file, report).then(function (found) {
      return completed(form, file, found[0], found[1], report);
    });
  }

  window.LubDubResumable = {
    /* The form's data-resumable-above, if any, moves the threshold. */
    wanted: function (form, file) {
      var above = form.dataset.resumableAbove ? Number(form.dataset.resumableAbove) : THRESHOLD;
      return file.size > above && !!(window.fetch && window.Promise && file.slice);
    },
    upload: upload
  };
})();
