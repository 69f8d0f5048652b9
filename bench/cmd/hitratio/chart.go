package main

func writeCharts(cfg config, res []result) error { return nil }
