package memberlist

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
)

// memberlistLogger returns the logger memberlist writes its lines to: one that passes them on to l
// as slog records, or one that drops them if l is nil.
func memberlistLogger(l *slog.Logger) *log.Logger {
	if l == nil {
		return log.New(io.Discard, "", 0)
	}
	return log.New(&logWriter{log: l.With(slog.String("component", "memberlist"))}, "", 0)
}

// logWriter turns memberlist's log lines ("[LEVEL] memberlist: message") into slog records at
// the matching level. The log.Logger in front of it calls Write once per line.
type logWriter struct {
	log *slog.Logger
}

func (w *logWriter) Write(p []byte) (int, error) {
	line := bytes.TrimRight(p, "\r\n")
	level := slog.LevelInfo
	if rest, ok := bytes.CutPrefix(line, []byte("[")); ok {
		if tag, msg, ok := bytes.Cut(rest, []byte("]")); ok {
			switch string(tag) {
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			line = bytes.TrimLeft(msg, " ")
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	ctx := context.Background()
	if w.log.Enabled(ctx, level) {
		w.log.Log(ctx, level, string(line))
	}
	return len(p), nil
}
