"""The seed's independent random streams: the initial weights and the batch order never share a draw."""

WEIGHTS_STREAM = 0
BATCH_ORDER_STREAM = 1
