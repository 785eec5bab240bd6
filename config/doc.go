// Package config loads sipsvc's YAML configuration, fills defaults, applies environment
// overrides and validates every field before anything starts. Errors name the bad field.
package config
