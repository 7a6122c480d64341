"""The trainer: CPU engine (TRL) and GPU engine (VeRL + SGLang), reward functions, evaluation runner."""
