/* LubDub pages: a little vanilla JavaScript for the live parts. Every page
   works without it; this only adds auto-submit, the upload progress bar, the
   live batch page and the plots. The recording page's waveform is waveform.js. */
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      });
  }

  /* Organisation switcher: submit when the choice changes. */
  function initAutosubmit() {
    document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
      var button = form.querySelector("[data-autosubmit-button]");
      if (button) button.classList.add("visually-hidden");
      form.querySelectorAll("select").forEach(function (select) {
        select.addEventListener("change", function () { form.submit(); });
      });
    });
  }

  /* Upload: pick or drop a file, send it with XHR to show progress, then go to the batch. */
  function initUpload() {
    var form = document.querySelector("form[data-upload]");
    if (!form) return;
    var input = form.querySelector("input[type=file]");
    var zone = form.querySelector(".dropzone");
    var chosen = form.querySelector("[data-chosen]");
    var progress = form.querySelector("[data-upload-progress]");
    var bar = progress.querySelector(".bar");
    var text = form.querySelector("[data-upload-text]");
    var errors = form.querySelector("[data-upload-errors]");
    var submit = form.querySelector("button[type=submit]");

    function showChosen() {
      var file = input.files && input.files[0];
      chosen.textContent = file ? file.name + " (" + formatBytes(file.size) + ")" : "No file chosen yet";
    }
    input.addEventListener("change", showChosen);
    zone.addEventListener("click", function (event) {
      if (event.target !== input) input.click();
    });
    zone.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
    });
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        showChosen();
      }
    });

    form.addEventListener("submit", function (event) {
      if (!window.FormData || !window.XMLHttpRequest) return;
      event.preventDefault();
      errors.textContent = "";
      if (!input.files || !input.files.length) {
        errors.textContent = "Choose a recording or a zip archive first.";
        return;
      }
      var limit = Number(form.dataset.maxBytes || 0);
      if (limit && input.files[0].size > limit) {
        errors.textContent = "The file is " + formatBytes(input.files[0].size) +
          "; uploads are limited to " + formatBytes(limit) + ".";
        return;
      }
      if (window.LubDubResumable && window.LubDubResumable.wanted(form, input.files[0])) {
        sendInParts(input.files[0]);
        return;
      }
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        var share = Math.round((e.loaded / e.total) * 100);
        bar.style.width = share + "%";
        progress.setAttribute("aria-valuenow", String(share));
        text.textContent = share < 100 ? "Uploading… " + share + " %" : "Upload complete, creating the batch…";
      });
      xhr.addEventListener("load", function () {
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (ignored) { body = {}; }
        if (xhr.status >= 200 && xhr.status < 300 && body.batch_url) {
          window.location.assign(body.batch_url);
          return;
        }
        submit.disabled = false;
        text.textContent = "";
        bar.style.width = "0";
        errors.textContent = body.error || "The upload was not accepted (HTTP " + xhr.status + ").";
      });
      xhr.addEventListener("error", function () {
        submit.disabled = false;
        errors.textContent = "The connection was lost during the upload. Try again.";
      });
      submit.disabled = true;
      progress.hidden = false;
      text.textContent = "Uploading… 0 %";
      xhr.send(new FormData(form));
    });

    /* A large file goes in parts (resumable.js), which survive a dropped connection. */
    function sendInParts(file) {
      submit.disabled = true;
      progress.hidden = false;
      window.LubDubResumable.upload(form, file, function (share, what) {
        var percent = Math.floor(share * 100);
        bar.style.width = percent + "%";
        progress.setAttribute("aria-valuenow", String(percent));
        text.textContent = what + percent + " %";
      }).then(function (url) {
        window.location.assign(url);
      }, function (error) {
        submit.disabled = false;
        text.textContent = "";
        errors.textContent = (error && error.message) || "The upload failed. Try again: what arrived is kept.";
      });
    }
  }

  function formatBytes(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KB";
    if (bytes < 1024 * 1024 * 1024) return (bytes / 1024 / 1024).toFixed(1) + " MB";
    return (bytes / 1024 / 1024 / 1024).toFixed(2) + " GB";
  }

  /* Batch page: poll the progress endpoint while the batch runs. The bar, badge and
     counts follow each answer; when the rows or results may have changed (the answer's
     version), the page's live parts (buttons, notices, class counts, the table) are
     fetched again in the reader's filter, sort and page and swapped in, at most every
     REFRESH_MS and once more when the batch ends: no reload. */
  var REFRESH_MS = 4000;

  function initBatchProgress() {
    var box = document.querySelector("[data-progress-url]");
    if (!box || box.dataset.finished === "true") return;
    var url = box.dataset.progressUrl;
    var badge = document.querySelector("[data-status-badge]");
    var reportPolls = 0;
    var shownPercent = 0;
    var refreshedVersion = box.dataset.version;
    var refreshedAt = Date.now();
    var refreshing = false;

    function showProgress(state) {
      // Never backwards, whatever order the answers arrive in.
      shownPercent = Math.max(shownPercent, state.percent);
      box.querySelector("[data-bar]").style.width = shownPercent + "%";
      box.querySelector("[role=progressbar]").setAttribute("aria-valuenow", String(shownPercent));
      // A bar that moves to and fro until the upload's file count is known, then the share.
      box.querySelector(".progress").classList.toggle("unpacking", state.indeterminate);
      box.querySelector("[data-percent]").textContent = shownPercent + " %";
      box.querySelector("[data-status]").textContent = state.status_display;
      box.querySelector("[data-counts]").textContent = state.counts_text;
      box.querySelector("[data-eta]").textContent = state.eta_text;
      if (badge) {
        badge.textContent = state.status_display;
        badge.className = "badge " + state.status;
      }
      if (state.finished) {
        document.querySelectorAll("[data-cancel]").forEach(function (link) { link.remove(); });
      }
      var requeued = document.querySelector("[data-requeued]");
      requeued.textContent = state.requeued_text;
      requeued.hidden = !state.requeued_text;
    }

    /* The page again, in the same query; each [data-live] part is replaced by the new one. */
    function refresh(version) {
      refreshing = true;
      return fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) { return response.ok ? response.text() : Promise.reject(); })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html");
          document.querySelectorAll("[data-live]").forEach(function (part) {
            var replacement = fresh.querySelector("[data-live='" + part.dataset.live + "']");
            if (replacement && !part.contains(document.activeElement)) part.replaceWith(replacement);
          });
          refreshedVersion = version;
        })
        .catch(function () { /* keep what is shown; the next answer tries again */ })
        .then(function () { refreshedAt = Date.now(); refreshing = false; });
    }

    function update(state) {
      showProgress(state);
      // A completed batch waits a moment more for its summary and reports (not when they
      // failed: the notices say why).
      var waitsForReports = /^completed/.test(state.status) && !state.reports_ready && !state.report_error;
      box.querySelector("[data-reports-wait]").hidden = !(state.finished && waitsForReports);
      var done = state.finished && (!waitsForReports || ++reportPolls > 40);
      var due = Date.now() - refreshedAt >= REFRESH_MS;
      if (done) {
        return refresh(state.version).then(function () {
          box.dataset.finished = "true";
          return true;
        });
      }
      if (state.version !== refreshedVersion && due && !refreshing) refresh(state.version);
      return Promise.resolve(false);
    }

    function poll() {
      getJSON(url)
        .then(update)
        .then(function (finished) { if (!finished) window.setTimeout(poll, 1500); })
        .catch(function () { window.setTimeout(poll, 5000); });
    }
    window.setTimeout(poll, 1000);
  }

  /* Recording page: plots are drawn once by a worker; wait for them to be ready. */
  function initPlots() {
    var box = document.querySelector("[data-plots-url]");
    if (!box || box.dataset.ready === "true") return;
    var url = box.dataset.plotsUrl;
    var tries = 0;
    function poll() {
      tries += 1;
      getJSON(url).then(function (state) {
        if (state.ready) {
          Object.keys(state.images).forEach(function (name) {
            var slot = box.querySelector("[data-plot='" + name + "']");
            if (!slot) return;
            var img = document.createElement("img");
            img.src = state.images[name];
            img.alt = slot.dataset.alt;
            slot.replaceWith(img);
          });
          var slot = document.querySelector("[data-audio-slot]");
          if (slot && state.audio) {
            var audio = document.createElement("audio");
            audio.controls = true;
            audio.preload = "metadata";
            audio.src = state.audio;
            audio.setAttribute("aria-labelledby", "audio-heading");
            slot.replaceWith(audio);
          }
          box.dataset.ready = "true";
        } else if (state.failed) {
          box.querySelectorAll("[data-plot]").forEach(function (slot) {
            slot.textContent = "The plots could not be drawn for this recording.";
          });
        } else if (tries < 120) {
          window.setTimeout(poll, tries < 10 ? 700 : 2000);
        }
      }).catch(function () { if (tries < 120) window.setTimeout(poll, 3000); });
    }
    poll();
  }

  /* Dashboard: refresh queue depth and workers every few seconds. */
  function initQueueStatus() {
    var box = document.querySelector("[data-queue-url]");
    if (!box) return;
    function poll() {
      fetch(box.dataset.queueUrl, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : Promise.reject(); })
        .then(function (html) { box.innerHTML = html; })
        .catch(function () { /* keep the last reading */ })
        .then(function () { window.setTimeout(poll, 5000); });
    }
    poll();
  }

  ready(function () {
    initAutosubmit();
    initUpload();
    initBatchProgress();
    initPlots();
    initQueueStatus();
  });
})();
