// Runs on the audio rendering thread: turns the input into 100 ms frames of mono s16le PCM.
// The page asks the AudioContext for 16 kHz, so the browser resamples the microphone with its
// own anti-alias filter; where it cannot (Firefox, a microphone at another rate), the page
// runs the context at the microphone's rate, and the server resamples the frames (soxr), told
// the rate in the socket URL.

class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Int16Array(Math.round(sampleRate / 10));
    this.filled = 0;
    this.sumSquares = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.flush();
        this.port.postMessage("flushed");
      }
    };
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const channels = input.length;
    const n = input[0].length;
    for (let i = 0; i < n; i++) {
      let x = 0;
      for (let c = 0; c < channels; c++) x += input[c][i];
      x /= channels;
      this.sumSquares += x * x;
      const clipped = Math.max(-1, Math.min(1, x));
      this.frame[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
      if (this.filled === this.frame.length) this.flush();
    }
    return true;
  }

  flush() {
    if (this.filled === 0) return;
    const pcm = this.frame.slice(0, this.filled);
    const level = Math.sqrt(this.sumSquares / this.filled);
    this.port.postMessage({ pcm: pcm.buffer, level }, [pcm.buffer]);
    this.filled = 0;
    this.sumSquares = 0;
  }
}

registerProcessor("pcm-capture", PcmCapture);
