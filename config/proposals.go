package config

import (
	"errors"
	"strings"

	"github.com/goipsec/goipsec/transform"
)

// parseIKEProposal parses one entry of a connection's proposals with
// transform.ParseIKEProposal, the one parser of strongSwan's keyword syntax
// (RFC 7296, Section 3.3); "default" stands for transform's built-in list.
func parseIKEProposal(text string) (IKEProposal, error) {
	if strings.EqualFold(text, "default") {
		return IKEProposal{Text: text, Default: true}, nil
	}
	p, err := transform.ParseIKEProposal(text)
	if err != nil {
		return IKEProposal{}, trimPkg(err)
	}
	return IKEProposal{Text: text, Parsed: p}, nil
}

// parseChildProposal parses one entry of a child's esp_proposals (or, with
// ah, ah_proposals) with transform.ParseESPProposal or ParseAHProposal;
// "default" stands for transform's built-in ESP list.
func parseChildProposal(text string, ah bool) (ChildProposal, error) {
	if strings.EqualFold(text, "default") {
		return ChildProposal{Text: text, Default: true}, nil
	}
	parse := transform.ParseESPProposal
	if ah {
		parse = transform.ParseAHProposal
	}
	p, err := parse(text)
	if err != nil {
		return ChildProposal{}, trimPkg(err)
	}
	return ChildProposal{Text: text, Parsed: p}, nil
}

// trimPkg drops the "transform: " prefixes of an error for a message that
// config prefixes with the file, line and key.
func trimPkg(err error) error {
	return errors.New(strings.ReplaceAll(err.Error(), "transform: ", ""))
}
