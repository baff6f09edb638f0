package ikewire

import "strconv"

// NotifyType is the Notify Message Type of a Notify payload (RFC 7296,
// Section 3.10.1). Types below 16384 are errors, the others status.
type NotifyType uint16

// Error notify types.
const (
	NotifyUnsupportedCriticalPayload NotifyType = 1  // UNSUPPORTED_CRITICAL_PAYLOAD
	NotifyInvalidIKESPI              NotifyType = 4  // INVALID_IKE_SPI
	NotifyInvalidMajorVersion        NotifyType = 5  // INVALID_MAJOR_VERSION
	NotifyInvalidSyntax              NotifyType = 7  // INVALID_SYNTAX
	NotifyInvalidMessageID           NotifyType = 9  // INVALID_MESSAGE_ID
	NotifyInvalidSPI                 NotifyType = 11 // INVALID_SPI
	NotifyNoProposalChosen           NotifyType = 14 // NO_PROPOSAL_CHOSEN
	NotifyInvalidKEPayload           NotifyType = 17 // INVALID_KE_PAYLOAD
	NotifyAuthenticationFailed       NotifyType = 24 // AUTHENTICATION_FAILED
	NotifySinglePairRequired         NotifyType = 34 // SINGLE_PAIR_REQUIRED
	NotifyNoAdditionalSAs            NotifyType = 35 // NO_ADDITIONAL_SAS
	NotifyInternalAddressFailure     NotifyType = 36 // INTERNAL_ADDRESS_FAILURE
	NotifyFailedCPRequired           NotifyType = 37 // FAILED_CP_REQUIRED
	NotifyTSUnacceptable             NotifyType = 38 // TS_UNACCEPTABLE
	NotifyInvalidSelectors           NotifyType = 39 // INVALID_SELECTORS
	NotifyUnacceptableAddresses      NotifyType = 40 // UNACCEPTABLE_ADDRESSES, RFC 4555
	NotifyUnexpectedNATDetected      NotifyType = 41 // UNEXPECTED_NAT_DETECTED, RFC 4555
	NotifyTemporaryFailure           NotifyType = 43 // TEMPORARY_FAILURE
	NotifyChildSANotFound            NotifyType = 44 // CHILD_SA_NOT_FOUND
	NotifyStateNotFound              NotifyType = 47 // STATE_NOT_FOUND, RFC 9370
)

// Status notify types.
const (
	NotifyInitialContact                NotifyType = 16384 // INITIAL_CONTACT
	NotifySetWindowSize                 NotifyType = 16385 // SET_WINDOW_SIZE
	NotifyAdditionalTSPossible          NotifyType = 16386 // ADDITIONAL_TS_POSSIBLE
	NotifyIPCompSupported               NotifyType = 16387 // IPCOMP_SUPPORTED
	NotifyNATDetectionSourceIP          NotifyType = 16388 // NAT_DETECTION_SOURCE_IP
	NotifyNATDetectionDestinationIP     NotifyType = 16389 // NAT_DETECTION_DESTINATION_IP
	NotifyCookie                        NotifyType = 16390 // COOKIE
	NotifyUseTransportMode              NotifyType = 16391 // USE_TRANSPORT_MODE
	NotifyHTTPCertLookupSupported       NotifyType = 16392 // HTTP_CERT_LOOKUP_SUPPORTED
	NotifyRekeySA                       NotifyType = 16393 // REKEY_SA
	NotifyESPTFCPaddingNotSupported     NotifyType = 16394 // ESP_TFC_PADDING_NOT_SUPPORTED
	NotifyNonFirstFragmentsAlso         NotifyType = 16395 // NON_FIRST_FRAGMENTS_ALSO
	NotifyMOBIKESupported               NotifyType = 16396 // MOBIKE_SUPPORTED, RFC 4555
	NotifyAdditionalIP4Address          NotifyType = 16397 // ADDITIONAL_IP4_ADDRESS, RFC 4555
	NotifyAdditionalIP6Address          NotifyType = 16398 // ADDITIONAL_IP6_ADDRESS, RFC 4555
	NotifyNoAdditionalAddresses         NotifyType = 16399 // NO_ADDITIONAL_ADDRESSES, RFC 4555
	NotifyUpdateSAAddresses             NotifyType = 16400 // UPDATE_SA_ADDRESSES, RFC 4555
	NotifyCookie2                       NotifyType = 16401 // COOKIE2, RFC 4555
	NotifyNoNATsAllowed                 NotifyType = 16402 // NO_NATS_ALLOWED, RFC 4555
	NotifyAuthLifetime                  NotifyType = 16403 // AUTH_LIFETIME, RFC 4478
	NotifyMultipleAuthSupported         NotifyType = 16404 // MULTIPLE_AUTH_SUPPORTED, RFC 4739
	NotifyAnotherAuthFollows            NotifyType = 16405 // ANOTHER_AUTH_FOLLOWS, RFC 4739
	NotifyRedirectSupported             NotifyType = 16406 // REDIRECT_SUPPORTED, RFC 5685
	NotifyRedirect                      NotifyType = 16407 // REDIRECT, RFC 5685
	NotifyRedirectedFrom                NotifyType = 16408 // REDIRECTED_FROM, RFC 5685
	NotifyEAPOnlyAuthentication         NotifyType = 16417 // EAP_ONLY_AUTHENTICATION, RFC 5998
	NotifyChildlessIKEv2Supported       NotifyType = 16418 // CHILDLESS_IKEV2_SUPPORTED, RFC 6023
	NotifyIKEv2FragmentationSupported   NotifyType = 16430 // IKEV2_FRAGMENTATION_SUPPORTED, RFC 7383
	NotifySignatureHashAlgorithms       NotifyType = 16431 // SIGNATURE_HASH_ALGORITHMS, RFC 7427
	NotifyUsePPK                        NotifyType = 16435 // USE_PPK, RFC 8784
	NotifyPPKIdentity                   NotifyType = 16436 // PPK_IDENTITY, RFC 8784
	NotifyNoPPKAuth                     NotifyType = 16437 // NO_PPK_AUTH, RFC 8784
	NotifyIntermediateExchangeSupported NotifyType = 16438 // INTERMEDIATE_EXCHANGE_SUPPORTED, RFC 9242
	NotifyAdditionalKeyExchange         NotifyType = 16441 // ADDITIONAL_KEY_EXCHANGE, RFC 9370
)

var notifyNames = map[NotifyType]string{
	NotifyUnsupportedCriticalPayload:    "UNSUPPORTED_CRITICAL_PAYLOAD",
	NotifyInvalidIKESPI:                 "INVALID_IKE_SPI",
	NotifyInvalidMajorVersion:           "INVALID_MAJOR_VERSION",
	NotifyInvalidSyntax:                 "INVALID_SYNTAX",
	NotifyInvalidMessageID:              "INVALID_MESSAGE_ID",
	NotifyInvalidSPI:                    "INVALID_SPI",
	NotifyNoProposalChosen:              "NO_PROPOSAL_CHOSEN",
	NotifyInvalidKEPayload:              "INVALID_KE_PAYLOAD",
	NotifyAuthenticationFailed:          "AUTHENTICATION_FAILED",
	NotifySinglePairRequired:            "SINGLE_PAIR_REQUIRED",
	NotifyNoAdditionalSAs:               "NO_ADDITIONAL_SAS",
	NotifyInternalAddressFailure:        "INTERNAL_ADDRESS_FAILURE",
	NotifyFailedCPRequired:              "FAILED_CP_REQUIRED",
	NotifyTSUnacceptable:                "TS_UNACCEPTABLE",
	NotifyInvalidSelectors:              "INVALID_SELECTORS",
	NotifyUnacceptableAddresses:         "UNACCEPTABLE_ADDRESSES",
	NotifyUnexpectedNATDetected:         "UNEXPECTED_NAT_DETECTED",
	NotifyTemporaryFailure:              "TEMPORARY_FAILURE",
	NotifyChildSANotFound:               "CHILD_SA_NOT_FOUND",
	NotifyStateNotFound:                 "STATE_NOT_FOUND",
	NotifyInitialContact:                "INITIAL_CONTACT",
	NotifySetWindowSize:                 "SET_WINDOW_SIZE",
	NotifyAdditionalTSPossible:          "ADDITIONAL_TS_POSSIBLE",
	NotifyIPCompSupported:               "IPCOMP_SUPPORTED",
	NotifyNATDetectionSourceIP:          "NAT_DETECTION_SOURCE_IP",
	NotifyNATDetectionDestinationIP:     "NAT_DETECTION_DESTINATION_IP",
	NotifyCookie:                        "COOKIE",
	NotifyUseTransportMode:              "USE_TRANSPORT_MODE",
	NotifyHTTPCertLookupSupported:       "HTTP_CERT_LOOKUP_SUPPORTED",
	NotifyRekeySA:                       "REKEY_SA",
	NotifyESPTFCPaddingNotSupported:     "ESP_TFC_PADDING_NOT_SUPPORTED",
	NotifyNonFirstFragmentsAlso:         "NON_FIRST_FRAGMENTS_ALSO",
	NotifyMOBIKESupported:               "MOBIKE_SUPPORTED",
	NotifyAdditionalIP4Address:          "ADDITIONAL_IP4_ADDRESS",
	NotifyAdditionalIP6Address:          "ADDITIONAL_IP6_ADDRESS",
	NotifyNoAdditionalAddresses:         "NO_ADDITIONAL_ADDRESSES",
	NotifyUpdateSAAddresses:             "UPDATE_SA_ADDRESSES",
	NotifyCookie2:                       "COOKIE2",
	NotifyNoNATsAllowed:                 "NO_NATS_ALLOWED",
	NotifyAuthLifetime:                  "AUTH_LIFETIME",
	NotifyMultipleAuthSupported:         "MULTIPLE_AUTH_SUPPORTED",
	NotifyAnotherAuthFollows:            "ANOTHER_AUTH_FOLLOWS",
	NotifyRedirectSupported:             "REDIRECT_SUPPORTED",
	NotifyRedirect:                      "REDIRECT",
	NotifyRedirectedFrom:                "REDIRECTED_FROM",
	NotifyEAPOnlyAuthentication:         "EAP_ONLY_AUTHENTICATION",
	NotifyChildlessIKEv2Supported:       "CHILDLESS_IKEV2_SUPPORTED",
	NotifyIKEv2FragmentationSupported:   "IKEV2_FRAGMENTATION_SUPPORTED",
	NotifySignatureHashAlgorithms:       "SIGNATURE_HASH_ALGORITHMS",
	NotifyUsePPK:                        "USE_PPK",
	NotifyPPKIdentity:                   "PPK_IDENTITY",
	NotifyNoPPKAuth:                     "NO_PPK_AUTH",
	NotifyIntermediateExchangeSupported: "INTERMEDIATE_EXCHANGE_SUPPORTED",
	NotifyAdditionalKeyExchange:         "ADDITIONAL_KEY_EXCHANGE",
}

// String returns the RFC name of the notify type, or its number.
func (t NotifyType) String() string {
	if s, ok := notifyNames[t]; ok {
		return s
	}
	return "NOTIFY(" + strconv.Itoa(int(t)) + ")"
}

// IsError reports whether t is an error type (below 16384, RFC 7296,
// Section 3.10.1): an unrecognized error type in a response still means the
// request failed.
func (t NotifyType) IsError() bool { return t != 0 && t < 16384 }
