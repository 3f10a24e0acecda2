"""The smallest pieces of 16 kHz audio a model can score, shared by the model's input checks and the
segment planner (`peft_ser.inference.segments`), so both refuse the same things.

Kept free of torch and numpy: the planner is plain arithmetic.
"""

from __future__ import annotations

MIN_SAMPLES = 400
"""25 ms: one analysis frame of every backbone's front end (Whisper's 400-sample STFT window);
a shorter clip or segment cannot be classified."""
MIN_HOP_SAMPLES = 160
"""10 ms: the finest frame step of any backbone's front end (Whisper's log-mel hop; the SSL
backbones step 20 ms). Windows shifted by less see the same frames again."""
