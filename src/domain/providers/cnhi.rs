//! CNHi (AFS Connect, legacy): one `credential_provider!` block, and CNH's identity server,
//! which CNHi FieldOps shares.

credential_provider! {
    /// CNHi (AFS Connect, legacy) credentials: your application's client id, secret and
    /// subscription key, and the grower's refresh token.
    Cnhi {
        name: "CNHi",
        title: "CNHi AFS Connect (legacy)",
        slug: "cnhi-credentials",
        object: "cnhiCredentials",
        operation: "cnhi",
        request: CnhiCredentialsRequest,
        response: CnhiCredentials,
        fields: {
            /// Your application's client id from the CNH developer portal.
            required plain client_id: String,
            /// Your application's client secret.
            required secret client_secret: String,
            /// Your subscription key (`Ocp-Apim-Subscription-Key` on data calls).
            required secret subscription_key: String,
            /// The grower's refresh token.
            required secret refresh_token: String,
            /// Which CNH environment the application is registered in.
            required environment client_environment: ClientEnvironment,
        },
        extras: {
            /// The current access token, once one has been issued.
            access_token: Option<String>,
        },
        check: CheckKind::OAuthRefresh(IDENTITY),
        example: {
            "clientId": "your-client-id",
            "clientSecret": "your-client-secret",
            "subscriptionKey": "your-subscription-key",
            "refreshToken": "grower-refresh-token",
            "clientEnvironment": "PRODUCTION"
        },
    }
}

// Below the block, whose imports it uses.
/// CNH's Auth0 identity server: the client in the form, a host per environment.
pub const IDENTITY: OAuthCheck = OAuthCheck {
    client_auth: ClientAuth::Body {
        id: "clientId",
        secret: "clientSecret",
    },
    production_token_url: Some("https://identity.cnhind.com/oauth/token"),
    stage_token_url: Some("https://stg.identity.cnhind.com/oauth/token"),
};
