"""The concept stage: windowed performance on delayed labels, calibration, change detection."""
