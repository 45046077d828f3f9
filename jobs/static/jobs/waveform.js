/* Recording page: the interactive waveform. Plain canvas, no library.

   The data (GET data-waveform-url) is the envelope a worker stored: the minimum
   and maximum of each short bin as signed bytes, plus the prediction's heart
   sounds, systole/diastole runs and window probabilities. Each redraw reduces
   the bins in view to one min/max pair per device pixel, so a recording of any
   length draws in about the same time. Without JavaScript the page shows the
   static overview image instead. */
(function () {
  "use strict";

  var WAVE = "#8a1c2b";
  var S1 = "#1f55a8";
  var S2 = "#1c6b3a";
  var SHADE = { systole: "rgba(31, 85, 168, 0.10)", diastole: "rgba(28, 107, 58, 0.08)" };
  var PROBABILITY = "#b42318";
  var MUTED = "#55606e";
  var GRID = "#e3e6ea";
  var CURSOR = "#1c2430";
  var HEIGHT = 230;
  var WAVE_HEIGHT = 140;
  var STRIP_TOP = 150;
  var STRIP_HEIGHT = 52;
  var MIN_SPAN_S = 0.5;
  var DRAG_PX = 4;
  var TICK_STEPS = [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600];

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  function decodePeaks(base64) {
    var raw = window.atob(base64);
    var peaks = new Int8Array(raw.length);
    for (var i = 0; i < raw.length; i++) peaks[i] = (raw.charCodeAt(i) << 24) >> 24;
    return peaks;
  }

  function Waveform(box, data) {
    this.box = box;
    this.canvas = box.querySelector("[data-waveform-canvas]");
    this.label = box.querySelector("[data-view-label]");
    this.context = this.canvas.getContext("2d");
    this.peaks = decodePeaks(data.peaks);
    this.bins = this.peaks.length / 2;
    this.perSecond = data.bins_per_second;
    this.duration = data.duration_s;
    this.s1 = data.s1_s || [];
    this.s2 = data.s2_s || [];
    this.segments = data.segments || [];
    this.timeline = data.timeline || [];
    this.timelineClass = data.timeline_class;
    this.threshold = data.threshold;
    this.start = 0;
    this.end = this.duration;
    this.columns = null;
    this.frame = 0;
  }

  Waveform.prototype.audio = function () {
    // The player may be swapped in after the page loaded (once a worker made the playable copy).
    return document.querySelector("audio");
  };

  Waveform.prototype.span = function () { return this.end - this.start; };

  Waveform.prototype.timeAt = function (clientX) {
    var box = this.canvas.getBoundingClientRect();
    var share = Math.min(Math.max((clientX - box.left) / box.width, 0), 1);
    return this.start + share * this.span();
  };

  Waveform.prototype.setView = function (start, end) {
    var span = Math.min(Math.max(end - start, Math.min(MIN_SPAN_S, this.duration)), this.duration);
    start = Math.min(Math.max(start, 0), this.duration - span);
    this.start = start;
    this.end = start + span;
    this.columns = null;
    this.draw();
  };

  Waveform.prototype.zoom = function (factor, around) {
    var centre = around === undefined ? (this.start + this.end) / 2 : around;
    var share = (centre - this.start) / this.span();
    var span = this.span() / factor;
    this.setView(centre - share * span, centre - share * span + span);
  };

  Waveform.prototype.pan = function (share) {
    this.setView(this.start + share * this.span(), this.end + share * this.span());
  };

  /* One min/max pair per device pixel over the bins in view. */
  Waveform.prototype.envelope = function (width) {
    var low = new Float32Array(width);
    var high = new Float32Array(width);
    var perPixel = (this.span() * this.perSecond) / width;
    for (var x = 0; x < width; x++) {
      var first = Math.floor((this.start * this.perSecond) + x * perPixel);
      var last = Math.max(first + 1, Math.floor((this.start * this.perSecond) + (x + 1) * perPixel));
      first = Math.min(Math.max(first, 0), this.bins - 1);
      last = Math.min(last, this.bins);
      var min = 127;
      var max = -127;
      for (var bin = first; bin < last; bin++) {
        if (this.peaks[2 * bin] < min) min = this.peaks[2 * bin];
        if (this.peaks[2 * bin + 1] > max) max = this.peaks[2 * bin + 1];
      }
      low[x] = min / 127;
      high[x] = max / 127;
    }
    return { low: low, high: high };
  };

  Waveform.prototype.resize = function () {
    var ratio = window.devicePixelRatio || 1;
    var width = Math.max(1, Math.round(this.canvas.clientWidth * ratio));
    if (this.canvas.width !== width) {
      this.canvas.width = width;
      this.canvas.height = Math.round(HEIGHT * ratio);
      this.columns = null;
    }
    return ratio;
  };

  Waveform.prototype.draw = function () {
    var ratio = this.resize();
    var width = this.canvas.width;
    var cssWidth = width / ratio;
    var g = this.context;
    var self = this;
    if (!this.columns) this.columns = this.envelope(width);
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, width, this.canvas.height);
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    function x(seconds) { return ((seconds - self.start) / self.span()) * cssWidth; }
    function inView(seconds) { return seconds >= self.start && seconds <= self.end; }

    var shaded = 0;
    this.segments.forEach(function (segment) {
      if (segment[2] < self.start || segment[1] > self.end) return;
      g.fillStyle = SHADE[segment[0]] || "transparent";
      g.fillRect(x(segment[1]), 0, Math.max(x(segment[2]) - x(segment[1]), 1), WAVE_HEIGHT);
      shaded += 1;
    });

    g.strokeStyle = GRID;
    g.lineWidth = 1;
    g.beginPath();
    g.moveTo(0, WAVE_HEIGHT / 2);
    g.lineTo(cssWidth, WAVE_HEIGHT / 2);
    g.stroke();
    g.fillStyle = WAVE;
    var half = WAVE_HEIGHT / 2 - 4;
    for (var column = 0; column < width; column++) {
      var top = WAVE_HEIGHT / 2 - this.columns.high[column] * half;
      var bottom = WAVE_HEIGHT / 2 - this.columns.low[column] * half;
      g.fillRect(column / ratio, top, 1 / ratio, Math.max(bottom - top, 1 / ratio));
    }

    var markers = 0;
    [[this.s1, S1, []], [this.s2, S2, [5, 3]]].forEach(function (kind) {
      g.strokeStyle = kind[1];
      g.setLineDash(kind[2]);
      g.lineWidth = 1.2;
      kind[0].forEach(function (onset) {
        if (!inView(onset)) return;
        g.beginPath();
        g.moveTo(x(onset), 0);
        g.lineTo(x(onset), WAVE_HEIGHT);
        g.stroke();
        markers += 1;
      });
    });
    g.setLineDash([]);

    this.drawStrip(g, cssWidth, x);
    this.drawAxis(g, cssWidth, x);
    this.drawCursor(g, x);

    var box = this.box;
    box.dataset.viewStart = this.start.toFixed(3);
    box.dataset.viewEnd = this.end.toFixed(3);
    box.dataset.markersDrawn = String(markers);
    box.dataset.segmentsDrawn = String(shaded);
    box.dataset.columns = String(width);
    this.label.textContent = formatTime(this.start) + " – " + formatTime(this.end) +
      " of " + formatTime(this.duration);
  };

  Waveform.prototype.drawStrip = function (g, cssWidth, x) {
    g.strokeStyle = GRID;
    g.strokeRect(0.5, STRIP_TOP + 0.5, cssWidth - 1, STRIP_HEIGHT);
    function y(p) { return STRIP_TOP + STRIP_HEIGHT - p * STRIP_HEIGHT; }
    if (this.threshold !== null && this.threshold !== undefined) {
      g.strokeStyle = MUTED;
      g.setLineDash([4, 3]);
      g.beginPath();
      g.moveTo(0, y(this.threshold));
      g.lineTo(cssWidth, y(this.threshold));
      g.stroke();
      g.setLineDash([]);
    }
    if (this.timeline.length) {
      g.strokeStyle = PROBABILITY;
      g.lineWidth = 1.6;
      g.beginPath();
      this.timeline.forEach(function (window, index) {
        var centre = x((window[0] + window[1]) / 2);
        if (index === 0) g.moveTo(centre, y(window[2]));
        else g.lineTo(centre, y(window[2]));
      });
      g.stroke();
    }
    g.fillStyle = MUTED;
    g.font = "11px system-ui, sans-serif";
    g.textBaseline = "top";
    var text = this.timelineClass ? "p(" + this.timelineClass + ") per window" : "no window probabilities";
    if (this.threshold !== null && this.threshold !== undefined) text += ", threshold " + this.threshold.toFixed(2);
    g.fillText(text, 4, STRIP_TOP + 3);
  };

  Waveform.prototype.drawAxis = function (g, cssWidth, x) {
    var span = this.span();
    var step = TICK_STEPS[TICK_STEPS.length - 1];
    for (var i = 0; i < TICK_STEPS.length; i++) {
      if ((span / TICK_STEPS[i]) * 60 <= cssWidth) { step = TICK_STEPS[i]; break; }
    }
    g.fillStyle = MUTED;
    g.strokeStyle = MUTED;
    g.font = "11px system-ui, sans-serif";
    g.textBaseline = "top";
    g.textAlign = "center";
    var axisTop = STRIP_TOP + STRIP_HEIGHT;
    for (var tick = Math.ceil(this.start / step) * step; tick <= this.end + 1e-9; tick += step) {
      var at = x(tick);
      g.beginPath();
      g.moveTo(at, axisTop);
      g.lineTo(at, axisTop + 4);
      g.stroke();
      g.fillText(formatTick(tick, step), Math.min(Math.max(at, 14), cssWidth - 14), axisTop + 6);
    }
    g.textAlign = "start";
  };

  Waveform.prototype.drawCursor = function (g, x) {
    var audio = this.audio();
    if (!audio) return;
    var now = audio.currentTime || 0;
    this.box.dataset.cursor = now.toFixed(3);
    if (now < this.start || now > this.end) return;
    g.strokeStyle = CURSOR;
    g.lineWidth = 2;
    g.beginPath();
    g.moveTo(x(now), 0);
    g.lineTo(x(now), STRIP_TOP + STRIP_HEIGHT);
    g.stroke();
  };

  /* While the audio plays, the cursor moves and a zoomed view turns the page when it leaves it. */
  Waveform.prototype.follow = function () {
    var self = this;
    var audio = this.audio();
    window.cancelAnimationFrame(this.frame);
    if (!audio) return;
    var now = audio.currentTime || 0;
    if (!audio.paused && this.span() < this.duration && (now > this.end || now < this.start)) {
      this.setView(now - 0.1 * this.span(), now + 0.9 * this.span());
    } else {
      this.draw();
    }
    if (!audio.paused && !audio.ended) {
      this.frame = window.requestAnimationFrame(function () { self.follow(); });
    }
  };

  Waveform.prototype.seek = function (seconds) {
    var audio = this.audio();
    if (!audio) return;
    audio.currentTime = Math.min(Math.max(seconds, 0), this.duration);
    this.draw();
  };

  Waveform.prototype.wire = function () {
    var self = this;
    var canvas = this.canvas;
    var press = null;
    canvas.addEventListener("pointerdown", function (event) {
      press = { x: event.clientX, start: self.start, dragged: false };
      canvas.setPointerCapture(event.pointerId);
    });
    canvas.addEventListener("pointermove", function (event) {
      if (!press) return;
      var moved = event.clientX - press.x;
      if (!press.dragged && Math.abs(moved) < DRAG_PX) return;
      press.dragged = true;
      canvas.classList.add("dragging");
      var seconds = (moved / canvas.clientWidth) * self.span();
      self.setView(press.start - seconds, press.start - seconds + self.span());
    });
    canvas.addEventListener("pointerup", function (event) {
      if (press && !press.dragged) self.seek(self.timeAt(event.clientX));
      press = null;
      canvas.classList.remove("dragging");
    });
    canvas.addEventListener("pointercancel", function () {
      press = null;
      canvas.classList.remove("dragging");
    });
    canvas.addEventListener("wheel", function (event) {
      if (event.ctrlKey || event.metaKey) {
        event.preventDefault();
        self.zoom(event.deltaY < 0 ? 1.25 : 0.8, self.timeAt(event.clientX));
      } else if (event.shiftKey || Math.abs(event.deltaX) > Math.abs(event.deltaY)) {
        event.preventDefault();
        var delta = event.shiftKey ? event.deltaY : event.deltaX;
        self.pan((delta > 0 ? 1 : -1) * 0.1);
      }
    }, { passive: false });
    canvas.addEventListener("keydown", function (event) {
      var audio = self.audio();
      if (event.key === "+" || event.key === "=") self.zoom(2, self.cursorInView());
      else if (event.key === "-") self.zoom(0.5);
      else if (event.key === "ArrowLeft") self.pan(-0.2);
      else if (event.key === "ArrowRight") self.pan(0.2);
      else if (event.key === "Home") self.setView(0, self.span());
      else if (event.key === "End") self.setView(self.duration - self.span(), self.duration);
      else if (event.key === " " && audio) { if (audio.paused) audio.play(); else audio.pause(); }
      else return;
      event.preventDefault();
    });
    this.box.querySelectorAll("[data-zoom]").forEach(function (button) {
      button.addEventListener("click", function () {
        if (button.dataset.zoom === "in") self.zoom(2, self.cursorInView());
        else if (button.dataset.zoom === "out") self.zoom(0.5);
        else self.setView(0, self.duration);
      });
    });
    this.box.querySelectorAll("[data-pan]").forEach(function (button) {
      button.addEventListener("click", function () { self.pan(0.5 * Number(button.dataset.pan)); });
    });
    // Media events do not bubble, but they do reach a capturing listener on the document,
    // whichever audio element the page holds by then.
    ["play", "playing", "pause", "seeked", "timeupdate", "loadedmetadata", "ended"].forEach(function (name) {
      document.addEventListener(name, function (event) {
        if (event.target === self.audio()) self.follow();
      }, true);
    });
    window.addEventListener("resize", function () { self.draw(); });
  };

  /* Zoom in around the playback position when it is in view, so a reader who clicked a beat keeps it. */
  Waveform.prototype.cursorInView = function () {
    var audio = this.audio();
    var now = audio ? audio.currentTime : NaN;
    return now >= this.start && now <= this.end && now > 0 ? now : undefined;
  };

  function formatTime(seconds) {
    if (seconds < 60) return seconds.toFixed(seconds < 10 ? 2 : 1) + " s";
    var minutes = Math.floor(seconds / 60);
    var rest = seconds - minutes * 60;
    return minutes + ":" + (rest < 10 ? "0" : "") + rest.toFixed(1);
  }

  function formatTick(seconds, step) {
    if (step >= 60 || seconds >= 600) return formatTime(seconds).replace(/\.\d$/, "");
    return seconds.toFixed(step < 0.1 ? 2 : step < 1 ? 1 : 0);
  }

  function show(box, data) {
    var waveform = new Waveform(box, data);
    box.hidden = false;
    // The interactive view replaces the static image (kept for pages without JavaScript).
    var figure = document.querySelector("[data-overview-figure]");
    if (figure) figure.hidden = true;
    waveform.wire();
    waveform.draw();
    box.dataset.ready = "true";
    box.waveform = waveform;
  }

  function initWaveform() {
    var box = document.querySelector("[data-waveform-url]");
    if (!box || !box.querySelector("canvas").getContext) return;
    var tries = 0;
    function poll() {
      tries += 1;
      fetch(box.dataset.waveformUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          if (data.ready) show(box, data);
          else if (!data.failed && tries < 120) window.setTimeout(poll, tries < 10 ? 700 : 2000);
        })
        .catch(function () { if (tries < 120) window.setTimeout(poll, 3000); });
    }
    poll();
  }

  ready(initWaveform);
})();
