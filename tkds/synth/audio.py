"""The soundtrack of a SynthTok video: a sound's melody and beat, under voice-like noise."""

from __future__ import annotations

import numpy as np

from tkds.synth.factors import Sound

# Vowel formants (Hz) for the voice-like noise.
VOWELS = ((800, 1200), (400, 2300), (300, 2700), (500, 900), (350, 800))


def _note(frequency: float, harmonics: tuple[float, ...], samples: int, sample_rate: int) -> np.ndarray:
    t = np.arange(samples) / sample_rate
    wave = np.zeros(samples)
    for order, amplitude in enumerate(harmonics, start=1):
        if amplitude and order * frequency < sample_rate / 2:
            wave += amplitude * np.sin(2 * np.pi * order * frequency * t)
    return wave / sum(harmonics)


def render_melody(sound: Sound, seconds: float, sample_rate: int, offset_s: float) -> np.ndarray:
    """The sound from `offset_s` on: its eighth-note pattern on its timbre, plus a kick on each beat."""
    total = round(seconds * sample_rate)
    eighth = 60.0 / sound.tempo_bpm / 2
    note_samples = int(eighth * sample_rate)
    t = np.arange(note_samples) / sample_rate
    envelope = np.minimum(t / sound.attack_s, 1.0) * np.exp(-t / sound.decay_s)
    kick_t = np.arange(int(0.09 * sample_rate)) / sample_rate
    kick = np.sin(2 * np.pi * (60 * kick_t - 110 * kick_t**2)) * np.exp(-kick_t / 0.03)

    out = np.zeros(total + note_samples)
    notes: dict[int, np.ndarray] = {}
    first = int(offset_s // eighth)
    for step in range(first, int((offset_s + seconds) // eighth) + 1):
        start = round((step * eighth - offset_s) * sample_rate)
        if start >= total:
            break
        degree = sound.pattern[step % len(sound.pattern)]
        if degree >= 0:
            octave, index = divmod(degree, len(sound.scale))
            midi = sound.root_midi + sound.scale[index] + 12 * octave
            if midi not in notes:
                frequency = 440.0 * 2 ** ((midi - 69) / 12)
                notes[midi] = _note(frequency, sound.harmonics, note_samples, sample_rate) * envelope
            lo = max(start, 0)
            out[lo : start + note_samples] += notes[midi][lo - start :]
        if step % 2 == 0 and start >= 0:
            out[start : start + kick.size] += 0.6 * kick[: out.size - start]
    return out[:total]


def render_voice(seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Voice-like babble: pitched syllables shaped by vowel formants, about four a second."""
    total = round(seconds * sample_rate)
    out = np.zeros(total)
    f0 = rng.uniform(100, 230)
    position = int(rng.uniform(0, 0.3) * sample_rate)
    while position < total:
        length = int(rng.uniform(0.12, 0.3) * sample_rate)
        pulses = np.zeros(length)
        period = sample_rate / (f0 * rng.uniform(0.9, 1.1))
        pulses[(np.arange(0, length, period)).astype(int)] = 1.0
        pulses += 0.05 * rng.standard_normal(length)
        fft_size = 1 << (length - 1).bit_length()  # a power of two: arbitrary lengths are slow
        spectrum = np.fft.rfft(pulses, fft_size)
        freqs = np.fft.rfftfreq(fft_size, 1 / sample_rate)
        f1, f2 = VOWELS[int(rng.integers(0, len(VOWELS)))]
        shape = np.exp(-(((freqs - f1) / 90) ** 2)) + 0.6 * np.exp(-(((freqs - f2) / 120) ** 2))
        syllable = np.fft.irfft(spectrum * shape, fft_size)[:length] * np.hanning(length)
        end = min(total, position + length)
        out[position:end] += syllable[: end - position]
        position = end + int(rng.uniform(0.03, 0.2) * sample_rate)
    return out


def render_soundtrack(
    sound: Sound, seconds: float, sample_rate: int, offset_s: float, snr_db: float, rng: np.random.Generator
) -> np.ndarray:
    """Melody plus voice at `snr_db` (melody power over voice power), peak-normalised, float32."""
    melody = render_melody(sound, seconds, sample_rate, offset_s)
    voice = render_voice(seconds, sample_rate, rng)
    melody_power, voice_power = np.mean(melody**2), np.mean(voice**2)
    if voice_power > 0 and melody_power > 0:
        voice *= np.sqrt(melody_power / voice_power / 10 ** (snr_db / 10))
    mix = melody + voice
    peak = np.abs(mix).max()
    gain = rng.uniform(0.5, 0.9)
    return (mix * (gain / peak if peak > 0 else 0)).astype(np.float32)
